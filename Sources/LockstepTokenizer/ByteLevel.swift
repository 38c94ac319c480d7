/// GPT-2's `bytes_to_unicode`: a one-to-one map from the 256 byte values to printable Unicode characters, so
/// that every token can be written in `vocab.json` and `merges.txt` as a visible string without spaces.
///
/// Bytes that are already printable and not a space keep their own character (`!`...`~`, `¡`...`¬`,
/// `®`...`ÿ`); the other 68 bytes (controls, space, DEL, NBSP, soft hyphen) take U+0100, U+0101, ... in
/// byte order. So the space byte 0x20 is written `Ġ` (U+0120) and newline 0x0A is `Ċ` (U+010A).
enum ByteLevel {
    /// `characters[b]` is the character that stands for byte b.
    static let characters: [Unicode.Scalar] = {
        var result = [Unicode.Scalar](repeating: "\0", count: 256)
        var next: UInt32 = 256
        for byte in 0..<256 {
            if isPrintable(UInt8(byte)) {
                result[byte] = Unicode.Scalar(UInt8(byte))
            } else {
                result[byte] = Unicode.Scalar(next)!
                next += 1
            }
        }
        return result
    }()

    /// The inverse map, indexed by scalar value (all are below U+0144); -1 where a scalar stands for no byte.
    static let bytes: [Int16] = {
        var result = [Int16](repeating: -1, count: 0x144)
        for (byte, scalar) in characters.enumerated() { result[Int(scalar.value)] = Int16(byte) }
        return result
    }()

    static func isPrintable(_ byte: UInt8) -> Bool {
        (0x21...0x7E).contains(byte) || (0xA1...0xAC).contains(byte) || (0xAE...0xFF).contains(byte)
    }

    /// The raw bytes a byte-level string stands for, or nil when it holds a character outside the 256.
    static func rawBytes(of token: String) -> [UInt8]? {
        var result: [UInt8] = []
        result.reserveCapacity(token.unicodeScalars.count)
        for scalar in token.unicodeScalars {
            let value = Int(scalar.value)
            guard value < bytes.count, bytes[value] >= 0 else { return nil }
            result.append(UInt8(bytes[value]))
        }
        return result
    }
}
