import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How token shard files are laid out on disk.
///
/// - `llmc`: llm.c's format. A 1024-byte header of 256 little-endian `Int32`:
///   `[0]` the magic number 20240520, `[1]` the version, `[2]` the token count, the rest zero; then the tokens.
///   Version 1 stores tokens as little-endian `UInt16` (vocabularies up to 65,536 ids, GPT-2's 50,257 included),
///   exactly as llm.c and its preparation scripts write it. Version 2 is Lockstep's variant for larger
///   vocabularies: the same header with version 2, then little-endian `UInt32` tokens.
///   The reader accepts both versions and checks `1024 + count × width == file size`.
/// - `nanogpt`: nanoGPT's headerless `.bin`: little-endian `UInt16` tokens only, the count being size / 2.
public enum ShardFormat: String, Codable, Sendable, CaseIterable {
    case llmc
    case nanogpt
}

/// Bytes per stored token in an llm.c-style shard, and the header version that announces it.
public enum TokenWidth: Int, Codable, Sendable {
    case uint16 = 2
    case uint32 = 4

    /// The llm.c header version for this width: 1 for `UInt16` (llm.c's own), 2 for `UInt32` (Lockstep's).
    public var version: Int32 { self == .uint16 ? 1 : 2 }

    /// The narrowest width that holds every id of a vocabulary of `vocabularySize` ids.
    public static func fitting(vocabularySize: Int) -> TokenWidth {
        vocabularySize <= 65_536 ? .uint16 : .uint32
    }
}

/// Constants of the llm.c shard header.
public enum ShardHeader {
    public static let magic: Int32 = 20_240_520
    public static let byteCount = 1024
    public static let intCount = 256
}

/// One token shard, memory-mapped read-only: opening costs no reading, and the kernel pages tokens in and out
/// as they are used, so memory stays bounded however many and however large the shards are.
public final class TokenShard: @unchecked Sendable {
    public let url: URL
    public let format: ShardFormat
    public let width: TokenWidth
    /// Number of tokens in the shard.
    public let count: Int

    /// Start of the mapping (nil for an empty file, which cannot be mapped) and its length in bytes.
    private let mapping: UnsafeMutableRawPointer?
    private let mappedBytes: Int
    /// First token byte: after the header for llm.c shards.
    private let tokens: UnsafeRawPointer?

    /// Opens and checks a shard.
    /// - Parameters:
    ///   - url: the shard file.
    ///   - format: its layout; see `ShardFormat`.
    ///   - vocabularySize: when given, every token is checked to be below it (one pass over the file).
    /// - Throws: `DataError` naming the file: missing, wrong magic, unknown version, a size that disagrees with
    ///   the header, or a token id out of range (with its token offset).
    public init(url: URL, format: ShardFormat, vocabularySize: Int? = nil) throws {
        self.url = url
        self.format = format
        let path = url.path
        let fd = open(path, O_RDONLY)
        if fd < 0 {
            if errno == ENOENT { throw DataError.fileNotFound(path: path) }
            throw DataError.io(path: path, operation: "open", errno: errno)
        }
        defer { close(fd) }
        var status = stat()
        if fstat(fd, &status) != 0 { throw DataError.io(path: path, operation: "fstat", errno: errno) }
        let size = Int(status.st_size)

        var mapping: UnsafeMutableRawPointer? = nil
        if size > 0 {
            guard let pointer = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), pointer != MAP_FAILED else {
                throw DataError.io(path: path, operation: "mmap", errno: errno)
            }
            mapping = pointer
        }
        // From here on the mapping must be released if a check fails.
        do {
            switch format {
            case .nanogpt:
                guard size % 2 == 0 else {
                    throw DataError.sizeMismatch(
                        path: path, expectedBytes: size - 1, foundBytes: size,
                        detail: "a nanoGPT .bin holds 2-byte tokens, so its size must be even")
                }
                width = .uint16
                count = size / 2
                tokens = mapping.map { UnsafeRawPointer($0) }
            case .llmc:
                guard size >= ShardHeader.byteCount, let mapping else {
                    throw DataError.sizeMismatch(
                        path: path, expectedBytes: ShardHeader.byteCount, foundBytes: size,
                        detail: "at least the 1024-byte llm.c header")
                }
                let header = UnsafeRawPointer(mapping)
                let magic = Int32(littleEndian: header.loadUnaligned(fromByteOffset: 0, as: Int32.self))
                let version = Int32(littleEndian: header.loadUnaligned(fromByteOffset: 4, as: Int32.self))
                let headerCount = Int32(littleEndian: header.loadUnaligned(fromByteOffset: 8, as: Int32.self))
                guard magic == ShardHeader.magic else {
                    throw DataError.badMagic(path: path, expected: ShardHeader.magic, found: magic)
                }
                switch version {
                case 1: width = .uint16
                case 2: width = .uint32
                default: throw DataError.unsupportedVersion(path: path, expected: [1, 2], found: version)
                }
                let expected = ShardHeader.byteCount + Int(headerCount) * width.rawValue
                guard headerCount >= 0, expected == size else {
                    throw DataError.sizeMismatch(
                        path: path, expectedBytes: expected, foundBytes: size,
                        detail: "header says \(headerCount) tokens of \(width.rawValue) bytes after 1024 header bytes")
                }
                count = Int(headerCount)
                tokens = header + ShardHeader.byteCount
            }
        } catch {
            if let mapping { munmap(mapping, size) }
            throw error
        }
        self.mapping = mapping
        self.mappedBytes = size
        if let vocabularySize { try validate(vocabularySize: vocabularySize) }
    }

    deinit {
        if let mapping { munmap(mapping, mappedBytes) }
    }

    /// The token at `index` (0-based, counted after the header).
    public subscript(index: Int) -> Int32 {
        precondition(index >= 0 && index < count, "token index \(index) out of range 0..<\(count) in \(url.path)")
        switch width {
        case .uint16:
            return Int32(UInt16(littleEndian: tokens!.loadUnaligned(fromByteOffset: index &* 2, as: UInt16.self)))
        case .uint32:
            return Int32(bitPattern: UInt32(littleEndian: tokens!.loadUnaligned(fromByteOffset: index &* 4, as: UInt32.self)))
        }
    }

    /// Copies tokens `[start, start + count)` into `destination`, widened to `Int32`.
    public func copyTokens(from start: Int, count n: Int, into destination: UnsafeMutablePointer<Int32>) {
        precondition(start >= 0 && n >= 0 && start + n <= count, "tokens \(start)..<\(start + n) out of range 0..<\(count) in \(url.path)")
        guard n > 0, let tokens else { return }
        switch width {
        case .uint16:
            let source = tokens + start &* 2
            for i in 0..<n {
                destination[i] = Int32(UInt16(littleEndian: source.loadUnaligned(fromByteOffset: i &* 2, as: UInt16.self)))
            }
        case .uint32:
            let source = tokens + start &* 4
            for i in 0..<n {
                destination[i] = Int32(bitPattern: UInt32(littleEndian: source.loadUnaligned(fromByteOffset: i &* 4, as: UInt32.self)))
            }
        }
    }

    /// Checks every token is below `vocabularySize`.
    /// - Throws: `DataError.tokenOutOfRange` with the first bad token's offset.
    /// - Complexity: one pass over the shard.
    public func validate(vocabularySize: Int) throws {
        guard count > 0, let tokens else { return }
        let limit = Int64(vocabularySize)
        switch width {
        case .uint16:
            for i in 0..<count {
                let token = Int64(UInt16(littleEndian: tokens.loadUnaligned(fromByteOffset: i &* 2, as: UInt16.self)))
                if token >= limit {
                    throw DataError.tokenOutOfRange(path: url.path, offset: i, token: token, vocabularySize: vocabularySize)
                }
            }
        case .uint32:
            for i in 0..<count {
                let token = Int64(UInt32(littleEndian: tokens.loadUnaligned(fromByteOffset: i &* 4, as: UInt32.self)))
                if token >= limit {
                    throw DataError.tokenOutOfRange(path: url.path, offset: i, token: token, vocabularySize: vocabularySize)
                }
            }
        }
    }
}
