import Foundation

/// What went wrong reading or writing tokenizer files; each message names the file, and the line where
/// there is one.
public enum TokenizerError: Error, CustomStringConvertible, Equatable {
    case missingFile(path: String)
    case unreadableFile(path: String, reason: String)
    /// A malformed file; `line` is 1-based, nil when the problem is not on one line.
    case invalidFile(path: String, line: Int?, reason: String)
    case unwritableFile(path: String, reason: String)

    public var description: String {
        switch self {
        case .missingFile(let path):
            return "\(path): no such file (a tokenizer directory holds vocab.json and merges.txt)"
        case .unreadableFile(let path, let reason):
            return "\(path): cannot read: \(reason)"
        case .invalidFile(let path, let line?, let reason):
            return "\(path):\(line): \(reason)"
        case .invalidFile(let path, nil, let reason):
            return "\(path): \(reason)"
        case .unwritableFile(let path, let reason):
            return "\(path): cannot write: \(reason)"
        }
    }
}
