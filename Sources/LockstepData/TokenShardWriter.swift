import Foundation
import LockstepFormats
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Streams tokens into llm.c-format shards of at most `tokensPerShard` tokens each, named
/// `<prefix>_000000.bin`, `<prefix>_000001.bin`, ... in `directory` (see `ShardFormat` for the layout).
///
/// Each shard is written under a temporary name (`.<name>.tmp`) with a zero header, the header is written last
/// (seeking back once the token count is known), and the file is then renamed into place, so a reader never
/// sees a half-written shard under a final name. Memory: one small buffer, whatever the number of tokens.
public final class TokenShardWriter {
    public let directory: URL
    public let prefix: String
    public let tokensPerShard: Int
    public let width: TokenWidth
    /// Final URLs of the shards completed so far, in order.
    public private(set) var writtenFiles: [URL] = []
    /// Tokens written over all shards, the open one included.
    public private(set) var totalTokens = 0

    private var fd: Int32 = -1
    private var temporaryPath = ""
    private var tokensInShard = 0
    /// Encoded little-endian tokens waiting to be written.
    private var buffer: [UInt8] = []
    private let bufferLimit = 1 << 20

    /// - Parameters:
    ///   - directory: where shards go; created if missing.
    ///   - prefix: file name prefix, such as `train` for `train_000000.bin`.
    ///   - tokensPerShard: the most tokens in one shard (llm.c uses 100 M).
    ///   - width: `.uint16` (version 1, llm.c's) or `.uint32` (version 2) tokens.
    public init(directory: URL, prefix: String, tokensPerShard: Int, width: TokenWidth) throws {
        guard tokensPerShard > 0, tokensPerShard <= Int(Int32.max) else {
            throw DataError.invalidArgument("tokensPerShard must be in 1...\(Int32.max), got \(tokensPerShard)")
        }
        self.directory = directory
        self.prefix = prefix
        self.tokensPerShard = tokensPerShard
        self.width = width
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        } catch {
            throw DataError.invalidArgument("\(directory.path): cannot create the shard directory: \(error)")
        }
        buffer.reserveCapacity(bufferLimit + 4)
    }

    deinit {
        // An unfinished shard is abandoned, never renamed into place.
        if fd >= 0 {
            close(fd)
            unlink(temporaryPath)
        }
    }

    /// The final file name of shard `index`.
    public func fileName(shard index: Int) -> String {
        let digits = String(index)
        return prefix + "_" + String(repeating: "0", count: max(0, 6 - digits.count)) + digits + ".bin"
    }

    /// Appends tokens, starting new shards as they fill.
    /// - Throws: `DataError.invalidArgument` for a token that does not fit the width; `DataError.io` on write failure.
    public func write<Tokens: Sequence>(_ tokens: Tokens) throws where Tokens.Element == Int32 {
        let maximum: Int64 = width == .uint16 ? Int64(UInt16.max) : Int64(UInt32.max)
        for token in tokens {
            guard token >= 0, Int64(token) <= maximum else {
                throw DataError.invalidArgument(
                    "token \(token) does not fit a \(width) shard (0...\(maximum)); use .uint32 for larger vocabularies")
            }
            if fd < 0 { try openShard() }
            switch width {
            case .uint16:
                let value = UInt16(truncatingIfNeeded: token)
                buffer.append(UInt8(truncatingIfNeeded: value))
                buffer.append(UInt8(truncatingIfNeeded: value >> 8))
            case .uint32:
                let value = UInt32(bitPattern: token)
                buffer.append(UInt8(truncatingIfNeeded: value))
                buffer.append(UInt8(truncatingIfNeeded: value >> 8))
                buffer.append(UInt8(truncatingIfNeeded: value >> 16))
                buffer.append(UInt8(truncatingIfNeeded: value >> 24))
            }
            tokensInShard += 1
            totalTokens += 1
            if buffer.count >= bufferLimit { try flushBuffer() }
            if tokensInShard == tokensPerShard { try closeShard() }
        }
    }

    /// Completes the last shard (if it holds any token).
    /// - Returns: every shard written, in order.
    @discardableResult
    public func finish() throws -> [URL] {
        if fd >= 0 { try closeShard() }
        return writtenFiles
    }

    // MARK: - Private

    private var currentFinalURL: URL { directory.appendingPathComponent(fileName(shard: writtenFiles.count)) }

    private func openShard() throws {
        let finalURL = currentFinalURL
        temporaryPath = directory.appendingPathComponent("." + finalURL.lastPathComponent + ".tmp").path
        fd = open(temporaryPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        if fd < 0 { throw DataError.io(path: temporaryPath, operation: "open for writing", errno: errno) }
        tokensInShard = 0
        // A zero header holds the place; the real one is written once the count is known.
        try writeAll([UInt8](repeating: 0, count: ShardHeader.byteCount), at: nil)
    }

    private func flushBuffer() throws {
        try writeAll(buffer, at: nil)
        buffer.removeAll(keepingCapacity: true)
    }

    private func closeShard() throws {
        try flushBuffer()
        var header = [Int32](repeating: 0, count: ShardHeader.intCount)
        header[0] = ShardHeader.magic.littleEndian
        header[1] = width.version.littleEndian
        header[2] = Int32(tokensInShard).littleEndian
        let bytes = header.withUnsafeBytes { Array($0) }
        try writeAll(bytes, at: 0)
        if fsync(fd) != 0 { throw DataError.io(path: temporaryPath, operation: "fsync", errno: errno) }
        close(fd)
        fd = -1
        let finalURL = currentFinalURL
        try AtomicFile.rename(URL(fileURLWithPath: temporaryPath), to: finalURL)
        writtenFiles.append(finalURL)
    }

    /// Writes all of `bytes` at the current position, or at `offset` when given.
    private func writeAll(_ bytes: [UInt8], at offset: Int?) throws {
        try bytes.withUnsafeBytes { raw in
            var done = 0
            while done < raw.count {
                let base = raw.baseAddress! + done
                let n = offset.map { pwrite(fd, base, raw.count - done, off_t($0 + done)) } ?? Glibc.write(fd, base, raw.count - done)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw DataError.io(path: temporaryPath, operation: "write", errno: errno)
                }
                done += n
            }
        }
    }
}
