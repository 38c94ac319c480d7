/// Everything that can go wrong reading or writing data files.
///
/// Each message names the file and where in it (line, token offset or byte count) and what was expected, so a
/// user can fix the input without reading the code.
public enum DataError: Error, Equatable, Sendable, CustomStringConvertible {
    case fileNotFound(path: String)
    /// A system call failed; `errno` is the C error number.
    case io(path: String, operation: String, errno: Int32)
    case noFilesMatch(pattern: String)
    case badMagic(path: String, expected: Int32, found: Int32)
    case unsupportedVersion(path: String, expected: [Int32], found: Int32)
    /// The file's size disagrees with the token count its header (or its format) implies.
    case sizeMismatch(path: String, expectedBytes: Int, foundBytes: Int, detail: String)
    /// A token id not below the vocabulary size; `offset` counts tokens from the start of the shard's tokens.
    case tokenOutOfRange(path: String, offset: Int, token: Int64, vocabularySize: Int)
    case invalidArgument(String)
    /// A labeled-data row that cannot be used; `line` is the 1-based line where the row starts.
    case malformedRow(path: String, line: Int, reason: String)
    case invalidUTF8(path: String, line: Int)
    case unknownLabel(path: String, line: Int, label: String, known: [String])

    public var description: String {
        switch self {
        case .fileNotFound(let path):
            return "\(path): no such file"
        case .io(let path, let operation, let errno):
            return "\(path): \(operation) failed with errno \(errno)"
        case .noFilesMatch(let pattern):
            return "no files match the pattern '\(pattern)'"
        case .badMagic(let path, let expected, let found):
            return "\(path): not a token shard: magic number is \(found), expected \(expected)"
        case .unsupportedVersion(let path, let expected, let found):
            let list = expected.map(String.init).joined(separator: " or ")
            return "\(path): unsupported token shard version \(found), expected \(list)"
        case .sizeMismatch(let path, let expectedBytes, let foundBytes, let detail):
            return "\(path): file is \(foundBytes) bytes, expected \(expectedBytes) (\(detail))"
        case .tokenOutOfRange(let path, let offset, let token, let vocabularySize):
            return "\(path): token \(token) at token offset \(offset) is not below the vocabulary size \(vocabularySize)"
        case .invalidArgument(let message):
            return message
        case .malformedRow(let path, let line, let reason):
            return "\(path):\(line): \(reason)"
        case .invalidUTF8(let path, let line):
            return "\(path):\(line): invalid UTF-8 (ask for replacement to read it with U+FFFD in place of bad bytes)"
        case .unknownLabel(let path, let line, let label, let known):
            return "\(path):\(line): unknown label '\(label)', expected one of \(known.joined(separator: ", "))"
        }
    }
}
