import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Training windows cut from token shards.
///
/// Each shard of n tokens gives `(n − 1) / T` windows of T + 1 tokens: window i of a shard covers tokens
/// `[i·T, i·T + T + 1)`, so consecutive windows share their boundary token and every token is predicted once.
/// Windows never cross shards (a shard's leftover tail is unused). Inputs are a window's first T tokens, targets
/// its last T. Windows are numbered globally in file order: shard 0's first, then shard 1's, and so on.
///
/// Shards are memory-mapped (see `TokenShard`), so memory stays bounded whatever the data's size.
public final class TokenWindowDataset: @unchecked Sendable {
    public let files: [URL]
    public let shards: [TokenShard]
    /// T: tokens of input (and of target) per window.
    public let sequenceLength: Int
    /// Windows in each shard, in file order.
    public let shardWindowCounts: [Int]
    /// Global index of each shard's first window.
    private let shardWindowStarts: [Int]

    /// Windows over all shards.
    public var windowCount: Int { shardWindowStarts.last.map { $0 + shardWindowCounts.last! } ?? 0 }

    /// Opens and checks every shard.
    /// - Parameters:
    ///   - files: shard files in the order that defines the unshuffled stream.
    ///   - format: their layout.
    ///   - sequenceLength: T.
    ///   - vocabularySize: when given, every token of every shard is checked against it once, here.
    /// - Throws: `DataError` for an empty file list, a bad T, or any shard that fails its checks.
    public init(files: [URL], format: ShardFormat, sequenceLength: Int, vocabularySize: Int? = nil) throws {
        guard !files.isEmpty else { throw DataError.invalidArgument("no token shard files given") }
        guard sequenceLength > 0 else {
            throw DataError.invalidArgument("sequence length must be positive, got \(sequenceLength)")
        }
        self.files = files
        self.sequenceLength = sequenceLength
        shards = try files.map { try TokenShard(url: $0, format: format, vocabularySize: vocabularySize) }
        shardWindowCounts = shards.map { max(0, ($0.count - 1) / sequenceLength) }
        var starts: [Int] = []
        var sum = 0
        for count in shardWindowCounts {
            starts.append(sum)
            sum += count
        }
        shardWindowStarts = starts
    }

    /// The shard holding global window `index`, and the window's number within that shard.
    public func location(ofWindow index: Int) -> (shard: Int, window: Int) {
        precondition(index >= 0 && index < windowCount, "window \(index) out of range 0..<\(windowCount)")
        // Last shard whose first window is at or before `index` (empty shards share the next one's start).
        var low = 0
        var high = shardWindowStarts.count - 1
        while low < high {
            let middle = (low + high + 1) / 2
            if shardWindowStarts[middle] <= index { low = middle } else { high = middle - 1 }
        }
        return (low, index - shardWindowStarts[low])
    }

    /// Copies window `index` (global, file order) into `inputs` (T tokens) and `targets` (T tokens).
    public func readWindow(_ index: Int, inputs: UnsafeMutablePointer<Int32>, targets: UnsafeMutablePointer<Int32>) {
        let (shard, window) = location(ofWindow: index)
        let start = window &* sequenceLength
        shards[shard].copyTokens(from: start, count: sequenceLength, into: inputs)
        shards[shard].copyTokens(from: start &+ 1, count: sequenceLength, into: targets)
    }

    /// Expands a shell glob such as `data/train_*.bin` into its matching files, sorted by path.
    /// - Throws: `DataError.noFilesMatch` naming the pattern when nothing matches.
    public static func files(matching pattern: String) throws -> [URL] {
        var result = glob_t()
        defer { globfree(&result) }
        let status = glob(pattern, 0, nil, &result)
        guard status == 0 else { throw DataError.noFilesMatch(pattern: pattern) }
        var paths: [String] = []
        for i in 0..<Int(result.gl_pathc) {
            if let path = result.gl_pathv[i] { paths.append(String(cString: path)) }
        }
        guard !paths.isEmpty else { throw DataError.noFilesMatch(pattern: pattern) }
        return paths.sorted().map { URL(fileURLWithPath: $0) }
    }
}
