import Foundation
import LockstepTestSupport
import Testing

@testable import LockstepCheckpoints

@Suite("Checkpoint directory")
struct CheckpointDirectoryTests {
    /// A checkpoint with the required files (`a.bin` standing for model.safetensors' contents).
    func save(_ directory: CheckpointDirectory, step: Int, marker: UInt8? = nil) throws -> URL {
        try directory.save(step: step, files: [
            ("a.bin", { try Data(repeating: marker ?? UInt8(step % 256), count: 1000).write(to: $0) }),
            ("model.safetensors", { try Data("model \(step)".utf8).write(to: $0) }),
            ("optimizer.safetensors", { try Data("optimizer \(step)".utf8).write(to: $0) }),
            ("state.json", { try Data("{\"step\":\(step)}".utf8).write(to: $0) }),
        ])
    }

    /// A checkpoint whose `checksums.json` does not list optimizer.safetensors is invalid, even with every file
    /// it lists intact, and is passed over like a corrupt one.
    @Test func checkpointMissingARequiredFileIsInvalid() throws {
        let temporary = try TemporaryDirectory()
        let directory = CheckpointDirectory(root: temporary.url)
        let first = try save(directory, step: 1)
        let second = try directory.save(step: 2, files: [
            ("model.safetensors", { try Data("model".utf8).write(to: $0) }),
            ("state.json", { try Data("{}".utf8).write(to: $0) }),
        ])
        var messages: [String] = []
        #expect(directory.newestValid { messages.append($0) }?.path == first.path)
        #expect(messages.count == 1)
        #expect(messages.first?.contains(second.appendingPathComponent("checksums.json").path) == true)
        #expect(messages.first?.contains("does not list optimizer.safetensors") == true)
        #expect(throws: CheckpointError.self) { try CheckpointDirectory.verify(second) }
        // Deleting a required file and its entry is caught the same way.
        let checksumsURL = first.appendingPathComponent("checksums.json")
        var checksums = try JSONDecoder().decode([String: String].self, from: Data(contentsOf: checksumsURL))
        checksums["state.json"] = nil
        try JSONEncoder().encode(checksums).write(to: checksumsURL)
        try FileManager.default.removeItem(at: first.appendingPathComponent("state.json"))
        let error = #expect(throws: CheckpointError.self) { try CheckpointDirectory.verify(first) }
        #expect(error?.description.contains("does not list state.json") == true)
        #expect(directory.newestValid() == nil)
    }

    /// What a crash left in checkpoints/ (a half-written `.tmp-step-*`, a step renamed aside mid-replace) is
    /// cleaned up by the next save: the temporary folder removed, the renamed-aside step put back.
    @Test func leftoversOfACrashAreRemovedOnTheNextSave() throws {
        let temporary = try TemporaryDirectory()
        let directory = CheckpointDirectory(root: temporary.url)
        let fileManager = FileManager.default
        let crashed = temporary.url.appendingPathComponent(".tmp-step-0000007-99999")
        try fileManager.createDirectory(at: crashed, withIntermediateDirectories: false)
        try Data("half".utf8).write(to: crashed.appendingPathComponent("model.safetensors"))
        let kept = try save(directory, step: 3)
        let aside = temporary.url.appendingPathComponent(".step-0000003.old-99999")
        try fileManager.moveItem(at: kept, to: aside)
        let stale = temporary.url.appendingPathComponent(".step-0000004.old-99999")
        try fileManager.createDirectory(at: stale, withIntermediateDirectories: false)
        _ = try save(directory, step: 4)
        // .tmp-step-0000007-… is gone; step 3 is back (its only copy); the stale aside of step 4 is removed.
        let names = try fileManager.contentsOfDirectory(atPath: temporary.url.path).sorted()
        #expect(names == ["latest", "step-0000003", "step-0000004"])
        try CheckpointDirectory.verify(kept)
    }

    /// Saving a step that exists swaps the new folder in with one rename: a reader polling the step meanwhile
    /// always finds a complete checkpoint, the old or the new.
    @Test func replacingAStepIsAtomic() throws {
        let temporary = try TemporaryDirectory()
        let directory = CheckpointDirectory(root: temporary.url)
        let step = try save(directory, step: 10, marker: 0)
        let stop = StopSignal()
        let missing = Counter()
        let files = ["a.bin", "checksums.json"] + CheckpointDirectory.requiredFiles
        let reader = Thread {
            while !stop.isSet {
                // Each lookup resolves the step's name anew: every file is there in whichever folder it names.
                for file in files where !FileManager.default.fileExists(atPath: step.appendingPathComponent(file).path) {
                    missing.increment()
                }
            }
        }
        reader.start()
        for round in 1...60 { _ = try save(directory, step: 10, marker: UInt8(round)) }
        stop.set()
        while !reader.isFinished { usleep(1000) }
        #expect(missing.value == 0, "the step was missing or incomplete \(missing.value) times while being replaced")
        #expect(try Data(contentsOf: step.appendingPathComponent("a.bin")).first == 60)
        let names = try FileManager.default.contentsOfDirectory(atPath: temporary.url.path).sorted()
        #expect(names == ["latest", "step-0000010"])
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

/// A flag one thread sets and another reads.
final class StopSignal: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.withLock { value } }
    func set() { lock.withLock { value = true } }
}

final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    var value: Int { lock.withLock { count } }
    func increment() { lock.withLock { count += 1 } }
}
