/// GPT-2's pre-tokenization, written out by hand over UTF-8 instead of through a regex engine:
///
///     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
///
/// At each position the first alternative that matches wins, and runs are greedy:
/// 1. An ASCII apostrophe followed by `s t re ve m ll d` (lower case only) is a token of its own.
/// 2. An optional single space U+0020, then a run of letters (`\p{L}`), or digits and other numbers
///    (`\p{N}`), or anything else that is not whitespace (punctuation, symbols, emoji, apostrophes).
/// 3. Whitespace (`\s`, Unicode White_Space) that reaches the end of the text is one token. A run of
///    whitespace followed by something else gives back its last character, because `\s+(?!\S)` must not be
///    followed by a non-space: that last character (if it is a space U+0020) then prefixes the next word.
///    A single whitespace character before a non-space is a token of its own (the final `\s+`).
/// So `"a  b"` splits as `a`, ` `, ` b`, and `"a\t\tb"` as `a`, `\t`, `\t`, `b`.
enum PreTokenizer {
    enum ScalarClass: UInt8 {
        case letter, number, whitespace, other
    }

    /// Classes of the scalars U+0000...U+FFFF, computed once; scalars above use their properties directly.
    static let basicPlane: [ScalarClass] = (0..<0x10000).map { value in
        guard let scalar = Unicode.Scalar(UInt32(value)) else { return .other }  // surrogates
        return classify(scalar)
    }

    static func classify(_ scalar: Unicode.Scalar) -> ScalarClass {
        let properties = scalar.properties
        if properties.isWhitespace { return .whitespace }
        switch properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
            return .letter
        case .decimalNumber, .letterNumber, .otherNumber:
            return .number
        default:
            return .other
        }
    }

    /// Calls `body(start, end)` for each pre-token of the valid UTF-8 in `text[start..<end]`, in order.
    /// The ranges tile the input exactly.
    @inline(__always)
    static func split(
        _ text: UnsafePointer<UInt8>, from start: Int, to end: Int, classes: UnsafePointer<ScalarClass>,
        _ body: (Int, Int) -> Void
    ) {
        /// Class and UTF-8 length of the scalar starting at `i`.
        @inline(__always) func scalar(at i: Int) -> (ScalarClass, Int) {
            let lead = text[i]
            if lead < 0x80 { return (classes[Int(lead)], 1) }
            var value: UInt32
            var length: Int
            if lead < 0xE0 {
                value = UInt32(lead & 0x1F); length = 2
            } else if lead < 0xF0 {
                value = UInt32(lead & 0x0F); length = 3
            } else {
                value = UInt32(lead & 0x07); length = 4
            }
            var k = 1
            while k < length {
                value = value << 6 | UInt32(text[i &+ k] & 0x3F)
                k &+= 1
            }
            if value < 0x10000 { return (classes[Int(value)], length) }
            return (classify(Unicode.Scalar(value) ?? "\u{FFFD}"), length)
        }

        var i = start
        while i < end {
            let byte = text[i]
            // 1. Contractions.
            if byte == 0x27, i &+ 1 < end {
                let c = text[i &+ 1]
                if c == 0x73 || c == 0x74 || c == 0x6D || c == 0x64 {  // s t m d
                    body(i, i &+ 2); i &+= 2; continue
                }
                if i &+ 2 < end {
                    let d = text[i &+ 2]
                    if (c == 0x72 && d == 0x65) || (c == 0x76 && d == 0x65) || (c == 0x6C && d == 0x6C) {  // re ve ll
                        body(i, i &+ 3); i &+= 3; continue
                    }
                }
            }
            var (kind, length) = scalar(at: i)
            var runStart = i
            // 2. An optional space before a run of letters, numbers or other symbols.
            if byte == 0x20, i &+ 1 < end {
                let (nextKind, nextLength) = scalar(at: i &+ 1)
                if nextKind != .whitespace {
                    kind = nextKind; length = nextLength; runStart = i &+ 1
                }
            }
            if kind != .whitespace {
                var j = runStart &+ length
                while j < end {
                    let (k, l) = scalar(at: j)
                    if k != kind { break }
                    j &+= l
                }
                body(i, j); i = j; continue
            }
            // 3. Whitespace: the whole run at the end of the text, else all but its last character.
            var lastStart = i
            var j = i &+ length
            while j < end {
                let (k, l) = scalar(at: j)
                if k != .whitespace { break }
                lastStart = j
                j &+= l
            }
            if j < end && lastStart > i { j = lastStart }
            body(i, j); i = j
        }
    }

    /// The pre-tokens of `text` as strings; for tests and inspection (encoding uses `split` directly).
    static func pieces(_ text: String) -> [String] {
        var text = text
        return text.withUTF8 { utf8 -> [String] in
            guard let base = utf8.baseAddress else { return [] }
            var result: [String] = []
            basicPlane.withUnsafeBufferPointer { classes in
                split(base, from: 0, to: utf8.count, classes: classes.baseAddress!) { start, end in
                    result.append(String(decoding: UnsafeBufferPointer(start: base + start, count: end - start), as: UTF8.self))
                }
            }
            return result
        }
    }
}
