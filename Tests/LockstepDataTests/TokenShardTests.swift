import Foundation
import Testing
@testable import LockstepData

@Suite struct TokenShardTests {
    @Test func writerSplitsIntoShardsThatReadBack() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        for width in [TokenWidth.uint16, .uint32] {
            let writer = try TokenShardWriter(directory: folder.url, prefix: "w\(width.rawValue)", tokensPerShard: 1000, width: width)
            let tokens = (0..<2500).map { Int32(($0 * 7919) % (width == .uint16 ? 65_536 : 1_000_000)) }
            try writer.write(tokens[0..<1234])
            try writer.write(tokens[1234...])
            let files = try writer.finish()
            #expect(files.map(\.lastPathComponent) == ["w\(width.rawValue)_000000.bin", "w\(width.rawValue)_000001.bin", "w\(width.rawValue)_000002.bin"])
            var readBack: [Int32] = []
            for file in files {
                let shard = try TokenShard(url: file, format: .llmc)
                #expect(shard.width == width)
                readBack += (0..<shard.count).map { shard[$0] }
            }
            #expect(readBack == tokens)
            #expect(writer.totalTokens == 2500)
        }
        // Only final names remain: no temporary files.
        let names = try FileManager.default.contentsOfDirectory(atPath: folder.url.path)
        #expect(names.allSatisfy { !$0.hasSuffix(".tmp") })
        #expect(names.count == 6)
    }

    @Test func writerHeaderIsLlmcVersion1() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let writer = try TokenShardWriter(directory: folder.url, prefix: "h", tokensPerShard: 100, width: .uint16)
        try writer.write([1, 2, 50256])
        let file = try writer.finish()[0]
        #expect(try Data(contentsOf: file) == shardBytes([1, 2, 50256]))
    }

    @Test func writerRejectsTokensTooWideForUInt16() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let writer = try TokenShardWriter(directory: folder.url, prefix: "x", tokensPerShard: 100, width: .uint16)
        #expect(throws: DataError.self) { try writer.write([70_000]) }
    }

    @Test func readsNanoGPTHeaderlessFiles() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        var data = Data()
        for token in [5, 65_535, 0, 300] as [UInt16] { withUnsafeBytes(of: token.littleEndian) { data.append(contentsOf: $0) } }
        let url = folder.file("nano.bin")
        try data.write(to: url)
        let shard = try TokenShard(url: url, format: .nanogpt)
        #expect((0..<shard.count).map { shard[$0] } == [5, 65_535, 0, 300])
        try (data + Data([1])).write(to: url)
        #expect(throws: DataError.self) { try TokenShard(url: url, format: .nanogpt) }
    }

    /// The error thrown by `body`, as text, or nil when it does not throw.
    private func message(_ body: () throws -> Void) -> String? {
        do { try body() } catch { return "\(error)" }
        return nil
    }

    @Test func badShardsGiveErrorsNamingFileAndExpectation() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let url = folder.file("bad.bin")

        try shardBytes([1, 2, 3], magic: 12345).write(to: url)
        let magic = try #require(message { _ = try TokenShard(url: url, format: .llmc) })
        #expect(magic.contains(url.path) && magic.contains("12345") && magic.contains("20240520"))

        try shardBytes([1, 2, 3], version: 7).write(to: url)
        let version = try #require(message { _ = try TokenShard(url: url, format: .llmc) })
        #expect(version.contains(url.path) && version.contains("version 7"))

        try shardBytes([1, 2, 3], headerCount: 4).write(to: url)
        let size = try #require(message { _ = try TokenShard(url: url, format: .llmc) })
        #expect(size.contains(url.path) && size.contains("1030 bytes") && size.contains("expected 1032"))

        try Data([1, 2, 3]).write(to: url)
        let short = try #require(message { _ = try TokenShard(url: url, format: .llmc) })
        #expect(short.contains(url.path) && short.contains("1024"))

        let missing = folder.file("missing.bin")
        let absent = try #require(message { _ = try TokenShard(url: missing, format: .llmc) })
        #expect(absent.contains(missing.path) && absent.contains("no such file"))
        #expect(throws: DataError.fileNotFound(path: missing.path)) { try TokenShard(url: missing, format: .llmc) }

        try shardBytes([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 300, 18]).write(to: url)
        let range = try #require(message { _ = try TokenShard(url: url, format: .llmc, vocabularySize: 256) })
        #expect(range.contains(url.path) && range.contains("offset 17") && range.contains("300") && range.contains("256"))
        #expect(try TokenShard(url: url, format: .llmc, vocabularySize: 301).count == 19)

        try shardBytes([1, 70_000], version: 2).write(to: url)
        #expect(throws: DataError.tokenOutOfRange(path: url.path, offset: 1, token: 70_000, vocabularySize: 65_536)) {
            try TokenWindowDataset(files: [url], format: .llmc, sequenceLength: 1, vocabularySize: 65_536)
        }
    }

    @Test func globExpandsSortedAndNamesPatternWhenEmpty() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        for name in ["train_2.bin", "train_0.bin", "train_1.bin", "val_0.bin"] { try shardBytes([1]).write(to: folder.file(name)) }
        let files = try TokenWindowDataset.files(matching: folder.url.path + "/train_*.bin")
        #expect(files.map(\.lastPathComponent) == ["train_0.bin", "train_1.bin", "train_2.bin"])
        let pattern = folder.url.path + "/test_*.bin"
        #expect(throws: DataError.noFilesMatch(pattern: pattern)) { try TokenWindowDataset.files(matching: pattern) }
    }
}
