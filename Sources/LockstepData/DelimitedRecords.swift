/// Records of a CSV (RFC 4180) or TSV file, read from its bytes.
///
/// Quoting follows RFC 4180 for both delimiters: a field that starts with `"` is quoted; inside it the delimiter
/// and line breaks are literal and `""` stands for one `"`; after the closing quote must come the delimiter, a
/// line break or the end of the file. A field that does not start with `"` runs to the next delimiter or line
/// break, and any `"` inside it is kept as it is (as Python's `csv` module does). Lines end with `\n` or `\r\n`.
/// Blank lines are skipped. Parsing is bytewise, which is safe for UTF-8 because every byte that matters here is
/// ASCII and never occurs inside a multi-byte character.
struct DelimitedRecords {
    private let bytes: [UInt8]
    private let delimiter: UInt8
    private let path: String
    private var index = 0
    /// The 1-based line of `index`.
    private var line = 1

    private static let quote = UInt8(ascii: "\"")
    private static let newline = UInt8(ascii: "\n")
    private static let carriageReturn = UInt8(ascii: "\r")

    init(bytes: [UInt8], delimiter: UInt8, path: String) {
        self.bytes = bytes
        self.delimiter = delimiter
        self.path = path
    }

    /// The next non-blank record with the line it starts on, or nil at the end of the file.
    /// - Throws: `DataError.malformedRow` for an unterminated quoted field or text after a closing quote.
    mutating func next() throws -> (line: Int, fields: [[UInt8]])? {
        while index < bytes.count {
            let start = line
            var fields: [[UInt8]] = []
            var endOfRecord = false
            while !endOfRecord {
                var field: [UInt8] = []
                if index < bytes.count && bytes[index] == Self.quote {
                    try readQuoted(into: &field, recordLine: start)
                } else {
                    while index < bytes.count && bytes[index] != delimiter && bytes[index] != Self.newline {
                        field.append(bytes[index])
                        index += 1
                    }
                    // `\r\n`: the `\r` belongs to the line break.
                    if index < bytes.count && bytes[index] == Self.newline && field.last == Self.carriageReturn {
                        field.removeLast()
                    }
                }
                fields.append(field)
                if index >= bytes.count {
                    endOfRecord = true
                } else if bytes[index] == delimiter {
                    index += 1
                } else {
                    // A line break (readQuoted guarantees nothing else can follow a quoted field).
                    index += 1
                    line += 1
                    endOfRecord = true
                }
            }
            if fields.count == 1 && fields[0].isEmpty { continue }
            return (start, fields)
        }
        return nil
    }

    /// Reads a quoted field starting at the opening quote; leaves `index` at what follows the closing quote.
    private mutating func readQuoted(into field: inout [UInt8], recordLine: Int) throws {
        let openingLine = line
        index += 1
        while true {
            guard index < bytes.count else {
                throw DataError.malformedRow(
                    path: path, line: recordLine,
                    reason: "quoted field opened on line \(openingLine) has no closing quote before the end of the file")
            }
            let byte = bytes[index]
            if byte == Self.quote {
                if index + 1 < bytes.count && bytes[index + 1] == Self.quote {
                    field.append(Self.quote)
                    index += 2
                    continue
                }
                index += 1
                break
            }
            if byte == Self.newline { line += 1 }
            field.append(byte)
            index += 1
        }
        if index < bytes.count && bytes[index] == Self.carriageReturn && index + 1 < bytes.count
            && bytes[index + 1] == Self.newline {
            index += 1
        }
        if index < bytes.count && bytes[index] != delimiter && bytes[index] != Self.newline {
            throw DataError.malformedRow(
                path: path, line: line,
                reason: "unexpected character '\(Character(Unicode.Scalar(bytes[index])))' after a closing quote (a quote inside a quoted field must be doubled: \"\")")
        }
    }
}
