import Foundation
import LockstepCheckpoints
import LockstepConfig
import LockstepModel
import LockstepTokenizer

/// The coordinator's checkpoints: when one is due (`checkpoint.every`, the last step, a new best dev metric,
/// an early stop), writing it in the background while the replicas go on, retention, the `best` pointer, and
/// the run's final `model/` directory.
///
/// Two snapshots take turns: replica 0 hands its state into one while the other may still be written, so a
/// handoff waits only when the save before last is still running. Saves run one after another, in step order.
///
/// `@unchecked Sendable`: a save's thread reads only its own snapshot, which the coordinator's thread leaves alone
/// until that save is done (`prepareHandoff`, `waitForSave`); `saveError` is guarded by `lock`.
final class Checkpointer: @unchecked Sendable {
    let directory: CheckpointDirectory
    let layout: ParameterLayout
    let every: Int
    let keepLast: Int
    let keepEvery: Int
    /// Buffers of replica 0's state (3 floats per parameter each): the second is made the first time a handoff
    /// comes while a save still reads the first.
    private var snapshots: [WorkerState]
    /// Which of `snapshots` holds the latest handoff.
    private var current = 0
    /// Per snapshot: the save that reads it, until it is done.
    private var savesReading: [DispatchGroup?] = [nil, nil]
    /// The newest save: each save's thread first waits for the one before it.
    private var lastSave: DispatchGroup?
    private let lock = NSLock()
    private var saveError: Error?

    init(config: RunConfig, layout: ParameterLayout) {
        directory = CheckpointDirectory(
            root: URL(fileURLWithPath: config.output.directory).appendingPathComponent("checkpoints"))
        self.layout = layout
        every = config.checkpoint.every
        keepLast = config.checkpoint.keepLast
        keepEvery = config.checkpoint.keepEvery
        snapshots = [WorkerState(count: layout.count)]
    }

    /// Replica 0's state as of the last handoff (or what a roll-back or the final export loaded); after
    /// `prepareHandoff`, the buffer the next handoff fills.
    var snapshot: WorkerState { snapshots[current] }

    /// Whether the step ending at `step` (counting from 1) saves by cadence alone.
    func isDue(step: Int, isLast: Bool) -> Bool {
        isLast || (every > 0 && step % every == 0)
    }

    /// A resumed fine-tuning run keeps pointing at its best checkpoint so far (retention spares it).
    func keepBest(step: Int?) throws {
        guard let step else { return }
        let best = directory.root.appendingPathComponent(CheckpointDirectory.name(step: step))
        if FileManager.default.fileExists(atPath: best.path) { try directory.setBest(best) }
    }

    /// Writes `snapshot` with `state` on a thread of its own, after the save before it; training continues
    /// meanwhile, and the next handoff goes into the other snapshot. `isBest`: point `best` at it once written.
    ///
    /// The thread runs at the lowest priority (nice 19; on Linux a thread's own): where the workers keep every
    /// core busy, as on a small machine, serialising, hashing and writing then take the time they leave idle
    /// instead of slowing their steps.
    func save(_ state: CheckpointState, isBest: Bool) {
        let done = DispatchGroup()
        done.enter()
        let previous = lastSave
        // Only this save reads it until `done`, before which the coordinator does not hand off into it.
        nonisolated(unsafe) let written = snapshots[current]
        let writer = Thread { [self] in
            defer { done.leave() }
            previous?.wait()
            _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, 19)
            do {
                let saved = try TrainingCheckpoint.save(snapshot: written, state: state, layout: layout, to: directory)
                if isBest { try directory.setBest(saved) }
                directory.applyRetention(keepLast: keepLast, keepEvery: keepEvery, protected: saved)
            } catch {
                lock.withLock { saveError = saveError ?? error }
            }
        }
        writer.name = "lockstep.checkpoint-writer"
        savesReading[current] = done
        lastSave = done
        writer.start()
    }

    /// Before a handoff: makes `snapshot` a buffer no save reads, the other one when the latest handoff is
    /// being saved (waiting only for the save before last), and rethrows any save's failure.
    func prepareHandoff() throws {
        if let save = savesReading[current], save.wait(timeout: .now()) == .timedOut {
            if snapshots.count == 1 { snapshots.append(WorkerState(count: layout.count)) }
            current = 1 - current
        }
        savesReading[current]?.wait()
        savesReading[current] = nil
        try rethrowSaveError()
    }

    /// Waits for every save in flight, and rethrows the first failure.
    func waitForSave() throws {
        lastSave?.wait()
        savesReading = [nil, nil]
        try rethrowSaveError()
    }

    private func rethrowSaveError() throws {
        let error = lock.withLock {
            defer { saveError = nil }
            return saveError
        }
        if let error { throw error }
    }

    /// Loads the newest valid checkpoint into `snapshot` (verified as a resume does).
    /// - Throws: `CheckpointError` when there is none.
    func loadNewest(model: GPTConfig) throws {
        guard let newest = directory.newestValid() else {
            throw CheckpointError(description: "\(directory.root.path): no valid checkpoint to export the model from")
        }
        _ = try TrainingCheckpoint.load(newest, expectedModel: model, into: snapshot)
    }

    /// The run's model as a Hugging Face directory with its tokenizer: the last parameters, or with
    /// `preferBest` (fine-tuning with a dev set) the best checkpoint's, with its temperature.
    func exportModel(
        to modelDirectory: URL, model: GPTConfig, labelNames: [String]?, temperature: Double?, preferBest: Bool,
        tokenizer: BPETokenizer
    ) throws {
        var temperature = temperature
        if preferBest, let best = directory.best, FileManager.default.fileExists(atPath: best.path) {
            temperature = try TrainingCheckpoint.load(best, expectedModel: model, into: snapshot).temperature
        }
        try ModelExport.writeHuggingFace(
            parameters: UnsafeBufferPointer(snapshot.parameters), model: model, labelNames: labelNames,
            temperature: temperature, tokenizer: tokenizer, to: modelDirectory)
    }
}
