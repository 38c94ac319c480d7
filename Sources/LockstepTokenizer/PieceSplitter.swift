import Foundation

/// Splits text into special tokens and the GPT-2 pre-tokens between them: the first step of both encoding
/// and training.
struct PieceSplitter: Sendable {
    /// Special tokens as UTF-8, longest first (so the longer of two that start at one place wins).
    let patterns: [(bytes: [UInt8], id: Int32)]
    /// Whether a byte can start a special token, to skip the comparison for most bytes.
    let firstBytes: [Bool]

    init(specialTokens: [String: Int32]) {
        patterns = specialTokens.map { (Array($0.key.utf8), $0.value) }
            .filter { !$0.0.isEmpty }
            .sorted { $0.0.count != $1.0.count ? $0.0.count > $1.0.count : $0.1 < $1.1 }
        var firstBytes = [Bool](repeating: false, count: 256)
        for pattern in patterns { firstBytes[Int(pattern.bytes[0])] = true }
        self.firstBytes = firstBytes
    }

    /// Calls `word(start, end)` for each pre-token of the valid UTF-8 `text[0..<count]` and `special(id)`
    /// for each special token, in text order.
    @inline(__always)
    func forEachPiece(
        _ text: UnsafePointer<UInt8>, count: Int, word: (Int, Int) -> Void, special: (Int32) -> Void
    ) {
        PreTokenizer.basicPlane.withUnsafeBufferPointer { classesBuffer in
            let classes = classesBuffer.baseAddress!
            if patterns.isEmpty {
                PreTokenizer.split(text, from: 0, to: count, classes: classes, word)
                return
            }
            var segmentStart = 0
            var i = 0
            while i < count {
                if firstBytes[Int(text[i])], let (length, id) = match(at: i, in: text, count: count) {
                    PreTokenizer.split(text, from: segmentStart, to: i, classes: classes, word)
                    special(id)
                    i &+= length
                    segmentStart = i
                } else {
                    i &+= 1
                }
            }
            PreTokenizer.split(text, from: segmentStart, to: count, classes: classes, word)
        }
    }

    @inline(__always)
    private func match(at i: Int, in text: UnsafePointer<UInt8>, count: Int) -> (Int, Int32)? {
        for pattern in patterns where pattern.bytes.count <= count &- i {
            if pattern.bytes.withUnsafeBufferPointer({ memcmp($0.baseAddress!, text + i, $0.count) == 0 }) {
                return (pattern.bytes.count, pattern.id)
            }
        }
        return nil
    }
}
