import Foundation
import LockstepTestSupport
import Testing

@testable import LockstepCheckpoints

@Suite("Checkpoint directory")
struct CheckpointDirectoryTests {
    func save(_ directory: CheckpointDirectory, step: Int) throws -> URL {
        try directory.save(step: step, files: [
            ("a.bin", { try Data(repeating: UInt8(step % 256), count: 1000).write(to: $0) }),
            ("state.json", { try Data("{\"step\":\(step)}".utf8).write(to: $0) }),
        ])
    }

    @Test func savesAtomicallyAndPointsLatest() throws {
        let temporary = try TemporaryDirectory()
        let directory = CheckpointDirectory(root: temporary.url.appendingPathComponent("checkpoints"))
        _ = try save(directory, step: 10)
        let second = try save(directory, step: 20)
        #expect(directory.checkpoints().map(\.step) == [20, 10])
        #expect(directory.newestValid()?.path == second.path)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: directory.root.path).filter { $0.hasPrefix(".") }
        #expect(leftovers.isEmpty)
    }

    @Test func corruptionIsDetectedAndPassedOver() throws {
        let temporary = try TemporaryDirectory()
        let directory = CheckpointDirectory(root: temporary.url)
        let first = try save(directory, step: 1)
        let second = try save(directory, step: 2)
        // Flip one bit of the newest checkpoint.
        let file = second.appendingPathComponent("a.bin")
        var bytes = try Data(contentsOf: file)
        bytes[500] ^= 0x10
        try bytes.write(to: file)
        var messages: [String] = []
        #expect(directory.newestValid { messages.append($0) }?.path == first.path)
        #expect(messages.count == 1 && messages[0].contains("a.bin: checksum mismatch"))
        // Truncate the older one too: nothing valid remains.
        try Data().write(to: first.appendingPathComponent("state.json"))
        #expect(directory.newestValid() == nil)
    }

    @Test func retentionKeepsLastAndMultiples() throws {
        let temporary = try TemporaryDirectory()
        let directory = CheckpointDirectory(root: temporary.url)
        var newest: URL? = nil
        for step in stride(from: 100, through: 800, by: 100) { newest = try save(directory, step: step) }
        directory.applyRetention(keepLast: 2, keepEvery: 300, protected: newest!)
        #expect(directory.checkpoints().map(\.step) == [800, 700, 600, 300])
        // The protected checkpoint survives even outside the last two.
        directory.applyRetention(keepLast: 1, keepEvery: 0, protected: directory.root.appendingPathComponent("step-0000600"))
        #expect(directory.checkpoints().map(\.step) == [800, 600])
    }

    @Test(.disabled(if: getuid() == 0, "root can write into a read-only directory, so there is no permission error to see"))
    func unwritableDirectoryFailsClearlyAndKeepsEarlierCheckpoints() throws {
        let temporary = try TemporaryDirectory()
        let directory = CheckpointDirectory(root: temporary.url)
        let first = try save(directory, step: 1)
        chmod(temporary.url.path, 0o500)
        defer { chmod(temporary.url.path, 0o700) }
        #expect(throws: CheckpointError.self) { try save(directory, step: 2) }
        #expect(directory.newestValid()?.path == first.path)
    }

    @Test func failingWriterLeavesNoPartialCheckpoint() throws {
        struct DiskFull: Error {}
        let temporary = try TemporaryDirectory()
        let directory = CheckpointDirectory(root: temporary.url)
        let first = try save(directory, step: 1)
        let error = #expect(throws: CheckpointError.self) {
            try directory.save(step: 2, files: [("a.bin", { _ in throw DiskFull() })])
        }
        #expect(error?.description.contains("earlier checkpoints are intact") == true)
        #expect(directory.checkpoints().map(\.step) == [1])
        #expect(directory.newestValid()?.path == first.path)
    }
}
