import Foundation
@testable import LockstepData

/// A fresh temporary folder for one test, removed by `remove()`.
struct TemporaryFolder {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("lockstep-data-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    func file(_ name: String) -> URL { url.appendingPathComponent(name) }

    func write(_ name: String, _ text: String) throws -> URL {
        let target = file(name)
        try Data(text.utf8).write(to: target)
        return target
    }

    func remove() { try? FileManager.default.removeItem(at: url) }
}

/// Bytes of an llm.c shard written by hand (independently of `TokenShardWriter`), with header fields that a
/// test may falsify.
func shardBytes(_ tokens: [Int], version: Int32 = 1, magic: Int32 = ShardHeader.magic, headerCount: Int32? = nil) -> Data {
    var header = [Int32](repeating: 0, count: 256)
    header[0] = magic.littleEndian
    header[1] = version.littleEndian
    header[2] = (headerCount ?? Int32(tokens.count)).littleEndian
    var data = header.withUnsafeBytes { Data($0) }
    for token in tokens {
        if version == 2 {
            withUnsafeBytes(of: UInt32(token).littleEndian) { data.append(contentsOf: $0) }
        } else {
            withUnsafeBytes(of: UInt16(token).littleEndian) { data.append(contentsOf: $0) }
        }
    }
    return data
}

/// Writes shards whose tokens are consecutive integers across files, so a token's value is its position in the
/// concatenated data and any window can be recognized by its first token.
func writeCountingShards(in folder: TemporaryFolder, sizes: [Int]) throws -> [URL] {
    var next = 0
    var urls: [URL] = []
    for (i, size) in sizes.enumerated() {
        let url = folder.file("train_\(i).bin")
        try shardBytes(Array(next..<next + size)).write(to: url)
        next += size
        urls.append(url)
    }
    return urls
}
