import Crypto
import Foundation
import LockstepFormats

/// A checkpoint problem, naming the directory or file and what was wrong.
public struct CheckpointError: Error, CustomStringConvertible, Equatable {
    public var description: String

    public init(description: String) {
        self.description = description
    }
}

/// The crash-safe mechanics of a folder of checkpoints, independent of what the files hold:
///
/// ```
/// runs/x/checkpoints/
///   step-0000500/   model.safetensors, optimizer.safetensors, state.json, checksums.json
///   step-0001000/
///   latest          "step-0001000"
///   best            "step-0000500"   (fine-tuning: the best dev metric so far)
/// ```
///
/// A save first removes what an interrupted save left (`.tmp-step-…`), writes into a new `.tmp-step-…`, fsyncs
/// every file and the folder, renames it into place (swapping it with an existing step of the same number in
/// one `renameat2(RENAME_EXCHANGE)`), and only then moves `latest` (write a temporary file, fsync, rename). A
/// crash at any moment leaves either the old or the new checkpoint visible, never a half-written one.
/// `checksums.json` holds the SHA-256 of every other file and must list `requiredFiles`, so truncation, bit
/// flips or a missing file are found on load and the checkpoint is passed over for an older valid one.
public struct CheckpointDirectory {
    public let root: URL

    public init(root: URL) {
        self.root = root
    }

    public static func name(step: Int) -> String { String(format: "step-%07d", step) }

    static func step(ofName name: String) -> Int? {
        guard name.hasPrefix("step-") else { return nil }
        return Int(name.dropFirst(5))
    }

    /// Writes one checkpoint. `files` maps file names to functions that write that file at the given URL.
    /// Returns the final directory. Throws (leaving earlier checkpoints untouched) on any I/O failure.
    @discardableResult
    public func save(step: Int, files: [(name: String, write: (URL) throws -> Void)]) throws -> URL {
        let fileManager = FileManager.default
        do {
            try fileManager.createDirectory(at: root, withIntermediateDirectories: true)
        } catch {
            throw CheckpointError(description: "\(root.path): cannot create the checkpoint directory (\(error.localizedDescription))")
        }
        let name = Self.name(step: step)
        let final = root.appendingPathComponent(name)
        let temporary = root.appendingPathComponent("\(Self.temporaryPrefix)\(name)-\(getpid())")
        try removeLeftovers()
        do {
            try fileManager.createDirectory(at: temporary, withIntermediateDirectories: false)
            try Self.writeChecksummed(files: files, in: temporary)
            try AtomicFile.sync(temporary)
            // An existing step (a resumed run saving a step again) is swapped for the new one in one rename.
            try AtomicFile.replaceDirectory(final, with: temporary)
            try setLatest(name)
        } catch {
            try? fileManager.removeItem(at: temporary)
            throw CheckpointError(
                description: "\(final.path): saving the checkpoint failed (\(error)); earlier checkpoints are intact")
        }
        return final
    }

    /// The files every Lockstep checkpoint has, and its `checksums.json` must list: a checkpoint without one of
    /// them is invalid, like a corrupt one.
    public static let requiredFiles = ["model.safetensors", "optimizer.safetensors", "state.json"]

    /// The start of the temporary folder a save writes into (`.tmp-step-0000500-<pid>`).
    static let temporaryPrefix = ".tmp-"

    /// Removes what an interrupted save left behind: `.tmp-step-*` folders (a crash while writing) and
    /// `.step-*.old-*` ones (a crash while replacing a step on a file system without an atomic exchange; such a
    /// folder is renamed back when its step is missing, since it is then the only copy). Saves are serial, so
    /// none of them belongs to a save in progress.
    /// - Throws: `CheckpointError` naming a leftover that cannot be removed.
    func removeLeftovers() throws {
        let fileManager = FileManager.default
        let names = (try? fileManager.contentsOfDirectory(atPath: root.path)) ?? []
        for name in names {
            let url = root.appendingPathComponent(name)
            let isTemporary = name.hasPrefix(Self.temporaryPrefix + "step-")
            let aside = name.hasPrefix(".step-") ? name.range(of: ".old-") : nil
            guard isTemporary || aside != nil else { continue }
            do {
                if let aside {
                    let original = root.appendingPathComponent(String(name[name.index(after: name.startIndex)..<aside.lowerBound]))
                    if !fileManager.fileExists(atPath: original.path) {
                        try AtomicFile.rename(url, to: original)
                        continue
                    }
                }
                try fileManager.removeItem(at: url)
            } catch {
                throw CheckpointError(
                    description: "\(url.path): cannot clean up this leftover of an interrupted save (\(error))")
            }
        }
    }

    /// Writes `files` into the existing folder `folder`, then `checksums.json` with the SHA-256 of each, and
    /// fsyncs every file and the folder: the contents of one checkpoint, ready to be renamed into place.
    static func writeChecksummed(files: [(name: String, write: (URL) throws -> Void)], in folder: URL) throws {
        var checksums: [String: String] = [:]
        for file in files {
            let url = folder.appendingPathComponent(file.name)
            try file.write(url)
            try AtomicFile.sync(url)
            checksums[file.name] = try sha256(of: url)
        }
        let checksumURL = folder.appendingPathComponent("checksums.json")
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(encoder.encode(checksums), to: checksumURL)
    }

    /// Points `latest` at `name` atomically.
    func setLatest(_ name: String) throws {
        try setPointer("latest", to: name)
    }

    /// Points `best` at the checkpoint `checkpoint` (one of this folder's) atomically; retention keeps it.
    public func setBest(_ checkpoint: URL) throws {
        try setPointer("best", to: checkpoint.lastPathComponent)
    }

    /// The checkpoint `best` points at, nil when there is none.
    public var best: URL? {
        pointer("best").map { root.appendingPathComponent($0) }
    }

    /// Writes the pointer file `pointer` (a checkpoint's name) through a temporary file, fsync and rename.
    private func setPointer(_ pointer: String, to name: String) throws {
        try AtomicFile.write(Data((name + "\n").utf8), to: root.appendingPathComponent(pointer))
    }

    private func pointer(_ pointer: String) -> String? {
        guard let name = try? String(contentsOf: root.appendingPathComponent(pointer), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines), !name.isEmpty
        else { return nil }
        return name
    }

    /// Checkpoint directories by step, newest first.
    public func checkpoints() -> [(step: Int, url: URL)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []
        return names.compactMap { name in Self.step(ofName: name).map { ($0, root.appendingPathComponent(name)) } }
            .sorted { $0.step > $1.step }
    }

    /// Checks that `checksums.json` lists each of `required` and that every file it lists matches its SHA-256.
    /// Throws naming the first missing or bad file.
    public static func verify(_ directory: URL, required: [String] = requiredFiles) throws {
        let checksumURL = directory.appendingPathComponent("checksums.json")
        guard let data = try? Data(contentsOf: checksumURL) else {
            throw CheckpointError(description: "\(checksumURL.path): missing or unreadable")
        }
        guard let checksums = try? JSONDecoder().decode([String: String].self, from: data) else {
            throw CheckpointError(description: "\(checksumURL.path): expected a JSON object of file name to SHA-256 hex string")
        }
        for (name, expected) in checksums {
            // Only files of this folder: a name with a path in it could point anywhere.
            guard !name.isEmpty, !name.contains("/"), name != ".", name != ".." else {
                throw CheckpointError(description: "\(checksumURL.path): '\(name)' is not a file name of this checkpoint")
            }
            guard expected.count == 64, expected.allSatisfy({ $0.isHexDigit }) else {
                throw CheckpointError(description: "\(checksumURL.path): the checksum of \(name) is '\(expected)', expected 64 hex digits")
            }
        }
        let unlisted = required.filter { checksums[$0] == nil }
        if !unlisted.isEmpty {
            throw CheckpointError(
                description: """
                    \(checksumURL.path): does not list \(unlisted.joined(separator: ", ")) (a checkpoint needs \
                    \(required.joined(separator: ", ")))
                    """)
        }
        for (name, expected) in checksums.sorted(by: { $0.key < $1.key }) {
            let url = directory.appendingPathComponent(name)
            guard FileManager.default.fileExists(atPath: url.path) else {
                throw CheckpointError(description: "\(url.path): missing")
            }
            let actual = try sha256(of: url)
            if actual != expected {
                throw CheckpointError(description: "\(url.path): checksum mismatch (expected sha256 \(expected), found \(actual))")
            }
        }
    }

    /// The newest checkpoint whose checksums hold, trying `latest` first and then every step downwards.
    /// `rejected` receives a message for each checkpoint passed over.
    public func newestValid(rejected: (String) -> Void = { _ in }) -> URL? {
        newestValid(required: Self.requiredFiles, rejected: rejected)
    }

    /// `newestValid(rejected:)` with the files each checkpoint must list (for folders of other contents).
    public func newestValid(required: [String], rejected: (String) -> Void = { _ in }) -> URL? {
        var candidates = checkpoints().map(\.url)
        if let name = pointer("latest") {
            let pointed = root.appendingPathComponent(name)
            candidates.removeAll { $0.lastPathComponent == name }
            candidates.insert(pointed, at: 0)
        }
        for candidate in candidates {
            do {
                try Self.verify(candidate, required: required)
                return candidate
            } catch {
                rejected("passing over \(candidate.path): \(error)")
            }
        }
        return nil
    }

    /// Deletes checkpoints beyond the newest `keepLast`, except multiples of `keepEvery`, `protected` (the
    /// checkpoint just saved, the newest valid one: the caller knows it holds, so nothing is re-hashed) and the
    /// one `best` points at.
    public func applyRetention(keepLast: Int, keepEvery: Int, protected: URL) {
        let best = pointer("best")
        for (index, checkpoint) in checkpoints().enumerated() where index >= keepLast {
            if keepEvery > 0 && checkpoint.step % keepEvery == 0 { continue }
            let name = checkpoint.url.lastPathComponent
            if name == protected.lastPathComponent || name == best { continue }
            try? FileManager.default.removeItem(at: checkpoint.url)
        }
    }

    public static func sha256(of url: URL) throws -> String {
        let handle = try FileHandle(forReadingFrom: url)
        defer { try? handle.close() }
        var hasher = SHA256()
        while let block = try handle.read(upToCount: 1 << 20), !block.isEmpty {
            hasher.update(data: block)
        }
        return hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }
}
