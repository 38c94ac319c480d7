import Foundation

/// One merge rule, as a line of `merges.txt`: the two tokens joined (in byte-level characters).
public struct BPEMerge: Hashable, Sendable {
    public let left: String
    public let right: String

    public init(_ left: String, _ right: String) {
        self.left = left
        self.right = right
    }
}

/// A byte-level BPE tokenizer exactly as GPT-2 and Hugging Face `tokenizers` define it.
///
/// Encoding: special tokens (`<|endoftext|>`) are found in the text first and map to their ids; the text
/// between them is split by GPT-2's pattern (`PreTokenizer`); each piece's UTF-8 bytes start as one token
/// each (the byte-level characters of `ByteLevel`) and the merge with the lowest rank (earliest line of
/// `merges.txt`) present among adjacent tokens is applied everywhere, left to right, until none applies.
/// Decoding maps each token back to its bytes and reads them as UTF-8, replacing invalid sequences.
///
/// Immutable apart from its word caches, so one instance serves all threads.
public final class BPETokenizer: Tokenizer {
    /// Token string (in byte-level characters; special tokens as written) -> id.
    public let vocabulary: [String: Int32]
    /// The merges in rank order: merge i joins `merges[i].left` and `merges[i].right`.
    public let merges: [BPEMerge]
    /// Special tokens matched literally in the text before pre-tokenization, with their ids.
    public let specialTokens: [String: Int32]
    public let vocabularySize: Int
    public let endOfTextID: Int32?

    /// Token strings by id; nil for ids the vocabulary skips.
    let tokenStrings: [String?]
    /// The id of the single-byte token for each byte value.
    let byteIDs: [Int32]
    /// (left id, right id) -> rank of that merge; `mergeRules[rank]` holds the id it produces.
    let mergeRanks: PairTable
    let mergeRules: [MergeRule]
    /// Bytes of token `id` for decoding: `tokenBytes[tokenByteStarts[id] ..< tokenByteStarts[id + 1]]`;
    /// `tokenExists[id]` is false for ids the vocabulary skips.
    let tokenBytes: [UInt8]
    let tokenByteStarts: [Int]
    let tokenExists: [Bool]
    /// Finds special tokens in text and splits the rest into pre-tokens.
    let specials: PieceSplitter
    /// One cache per worker of `encodeBatch`; the first also serves `encode`.
    let caches: [CacheBox]

    /// A merge as ids: `left` and `right` join into `result`.
    struct MergeRule: Sendable {
        var left: Int32
        var right: Int32
        var result: Int32
    }

    /// - Precondition: `vocabulary` holds the byte-level character of every byte and every special token;
    ///   each rule's tokens and result are in it. Loading and training check this before calling.
    init(vocabulary: [String: Int32], rules: [MergeRule], specialTokens: [String]) {
        self.vocabulary = vocabulary
        let size = Int(vocabulary.values.max() ?? -1) + 1
        vocabularySize = size

        var tokenStrings = [String?](repeating: nil, count: size)
        for (token, id) in vocabulary { tokenStrings[Int(id)] = token }
        self.tokenStrings = tokenStrings
        merges = rules.map { BPEMerge(tokenStrings[Int($0.left)]!, tokenStrings[Int($0.right)]!) }

        byteIDs = (0..<256).map { vocabulary[String(ByteLevel.characters[$0])]! }
        var ranks = PairTable(capacity: rules.count)
        for (rank, rule) in rules.enumerated() { ranks.insertIfAbsent(rule.left, rule.right, Int32(rank)) }
        mergeRanks = ranks
        mergeRules = rules

        var specials: [String: Int32] = [:]
        for token in specialTokens { if let id = vocabulary[token] { specials[token] = id } }
        self.specialTokens = specials
        endOfTextID = specials["<|endoftext|>"]
        self.specials = PieceSplitter(specialTokens: specials)

        var bytes: [UInt8] = []
        var starts: [Int] = [0]
        var exists = [Bool](repeating: false, count: size)
        for id in 0..<size {
            if let token = tokenStrings[id] {
                exists[id] = true
                if specials[token] != nil {
                    bytes.append(contentsOf: token.utf8)
                } else {
                    bytes.append(contentsOf: ByteLevel.rawBytes(of: token) ?? Array(token.utf8))
                }
            }
            starts.append(bytes.count)
        }
        tokenBytes = bytes
        tokenByteStarts = starts
        tokenExists = exists
        caches = (0..<max(1, ProcessInfo.processInfo.activeProcessorCount)).map { _ in CacheBox() }
    }

    /// The token string for `id` (byte-level characters), or nil when no token has that id.
    public func token(for id: Int32) -> String? {
        guard id >= 0, Int(id) < vocabularySize else { return nil }
        return tokenStrings[Int(id)]
    }

    // MARK: - Encoding

    public func encode(_ text: String) -> [Int32] {
        caches[0].withCache { cache in encode(text, cache: &cache) }
    }

    /// Encodes each text, spreading the texts over all cores.
    /// - Returns: `result[i] == encode(texts[i])`.
    public func encodeBatch(_ texts: [String]) -> [[Int32]] { encodeBatch(texts, threads: nil) }

    /// Encodes each text on `threads` threads (nil: all cores); each thread takes a contiguous run of texts
    /// with about equal bytes and keeps its own word cache.
    /// - Returns: `result[i] == encode(texts[i])`.
    public func encodeBatch(_ texts: [String], threads: Int?) -> [[Int32]] {
        let workers = max(1, min(threads ?? caches.count, texts.count))
        if workers == 1 {
            return caches[0].withCache { cache in texts.map { encode($0, cache: &cache) } }
        }
        // Contiguous ranges of texts with about equal byte counts, one per worker.
        var boundaries = [0]
        let total = texts.reduce(0) { $0 + $1.utf8.count }
        var seen = 0
        for (i, text) in texts.enumerated() {
            seen += text.utf8.count
            if boundaries.count < workers, seen * workers >= total * boundaries.count { boundaries.append(i + 1) }
        }
        while boundaries.count <= workers { boundaries.append(texts.count) }
        boundaries[workers] = texts.count
        let ranges = boundaries

        var results = [[Int32]](repeating: [], count: texts.count)
        results.withUnsafeMutableBufferPointer { output in
            nonisolated(unsafe) let output = output
            DispatchQueue.concurrentPerform(iterations: workers) { worker in
                let box = caches[worker % caches.count]
                box.withCache { cache in
                    for i in ranges[worker] ..< ranges[worker + 1] {
                        output[i] = encode(texts[i], cache: &cache)
                    }
                }
            }
        }
        return results
    }

    func encode(_ text: String, cache: inout WordCache) -> [Int32] {
        var text = text
        var output: [Int32] = []
        output.reserveCapacity(text.utf8.count / 3 + 4)
        text.withUTF8 { utf8 in
            guard let base = utf8.baseAddress else { return }
            encode(base, count: utf8.count, cache: &cache, into: &output)
        }
        return output
    }

    /// Appends the ids of the valid UTF-8 `text[0..<count]` to `output`.
    func encode(_ text: UnsafePointer<UInt8>, count: Int, cache: inout WordCache, into output: inout [Int32]) {
        var symbols: [Int32] = []
        specials.forEachPiece(text, count: count) { start, end in
            let word = text + start
            let length = end &- start
            let hash = ByteStringTable.hash(word, length)
            if cache.appendIDs(word, length, hash: hash, to: &output) { return }
            mergeWord(word, length, into: &symbols)
            cache.insert(word, length, hash: hash, ids: symbols)
            output.append(contentsOf: symbols)
        } special: { id in
            output.append(id)
        }
    }

    /// Words longer than this many bytes use the heap (O(n log n)) instead of rounds of scans (O(n²)).
    static let longWord = 48

    /// BPE on one pre-token: `symbols` becomes the ids of `word[0..<length]`.
    func mergeWord(_ word: UnsafePointer<UInt8>, _ length: Int, into symbols: inout [Int32]) {
        symbols.removeAll(keepingCapacity: true)
        for k in 0..<length { symbols.append(byteIDs[Int(word[k])]) }
        if length > BPETokenizer.longWord {
            mergeWithHeap(&symbols)
        } else {
            mergeInRounds(&symbols)
        }
    }

    /// Each round finds the lowest-rank merge among adjacent pairs and applies it to every occurrence, left
    /// to right, as GPT-2's `bpe()` does. Fast for the short words that make up almost all text.
    func mergeInRounds(_ symbols: inout [Int32]) {
        while symbols.count > 1 {
            var bestRank = Int32.max
            var k = 0
            while k &+ 1 < symbols.count {
                if let rank = mergeRanks.value(symbols[k], symbols[k &+ 1]), rank < bestRank { bestRank = rank }
                k &+= 1
            }
            if bestRank == Int32.max { break }
            let rule = mergeRules[Int(bestRank)]
            var read = 0
            var write = 0
            let n = symbols.count
            while read < n {
                if read &+ 1 < n && symbols[read] == rule.left && symbols[read &+ 1] == rule.right {
                    symbols[write] = rule.result
                    read &+= 2
                } else {
                    symbols[write] = symbols[read]
                    read &+= 1
                }
                write &+= 1
            }
            symbols.removeLast(n &- write)
        }
    }

    /// The same result as `mergeInRounds` in O(n log n), as Hugging Face's `Word::merge_all` does it: a
    /// min-heap of (rank, position) over a doubly linked list of symbols, always applying the lowest rank
    /// and, among equal ranks, the leftmost; entries whose pair has changed since they were pushed are
    /// skipped when popped.
    func mergeWithHeap(_ symbols: inout [Int32]) {
        let n = symbols.count
        var next = (0..<n).map { $0 + 1 }  // n: none
        var previous = (0..<n).map { $0 - 1 }  // -1: none
        var alive = [Bool](repeating: true, count: n)
        var heap = MinHeap()
        for k in 0 ..< n - 1 {
            if let rank = mergeRanks.value(symbols[k], symbols[k + 1]) { heap.push(rank: rank, position: k) }
        }
        while let (rank, position) = heap.pop() {
            guard alive[position], next[position] < n else { continue }
            let right = next[position]
            guard mergeRanks.value(symbols[position], symbols[right]) == rank else { continue }
            symbols[position] = mergeRules[Int(rank)].result
            alive[right] = false
            next[position] = next[right]
            if next[right] < n { previous[next[right]] = position }
            if previous[position] >= 0, let rank = mergeRanks.value(symbols[previous[position]], symbols[position]) {
                heap.push(rank: rank, position: previous[position])
            }
            if next[position] < n, let rank = mergeRanks.value(symbols[position], symbols[next[position]]) {
                heap.push(rank: rank, position: position)
            }
        }
        var write = 0
        var k = 0
        while k < n {
            symbols[write] = symbols[k]
            write += 1
            k = next[k]
        }
        symbols.removeLast(n - write)
    }

    // MARK: - Decoding

    public func decode(_ ids: [Int32]) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(ids.count * 4)
        for id in ids {
            if id >= 0, Int(id) < vocabularySize, tokenExists[Int(id)] {
                bytes.append(contentsOf: tokenBytes[tokenByteStarts[Int(id)] ..< tokenByteStarts[Int(id) + 1]])
            } else {
                bytes.append(contentsOf: [0xEF, 0xBF, 0xBD])  // U+FFFD for an id outside the vocabulary
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// A binary min-heap of (rank, position), packed as `rank << 32 | position` so one compare orders both.
struct MinHeap {
    private var entries: [UInt64] = []

    mutating func push(rank: Int32, position: Int) {
        entries.append(UInt64(UInt32(rank)) << 32 | UInt64(position))
        var child = entries.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            if entries[parent] <= entries[child] { break }
            entries.swapAt(parent, child)
            child = parent
        }
    }

    mutating func pop() -> (rank: Int32, position: Int)? {
        guard let last = entries.popLast() else { return nil }
        var top = last
        if !entries.isEmpty {
            top = entries[0]
            entries[0] = last
            var parent = 0
            while true {
                let left = 2 * parent + 1
                if left >= entries.count { break }
                var smallest = left
                if left + 1 < entries.count && entries[left + 1] < entries[left] { smallest = left + 1 }
                if entries[parent] <= entries[smallest] { break }
                entries.swapAt(parent, smallest)
                parent = smallest
            }
        }
        return (Int32(truncatingIfNeeded: top >> 32), Int(truncatingIfNeeded: top & 0xFFFF_FFFF))
    }
}
