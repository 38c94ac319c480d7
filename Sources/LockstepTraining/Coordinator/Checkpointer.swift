import Foundation
import LockstepCheckpoints
import LockstepConfig
import LockstepModel
import LockstepTokenizer

/// The coordinator's checkpoints: when one is due (`checkpoint.every`, the last step, a new best dev metric,
/// an early stop), writing it in the background while the replicas go on, retention, the `best` pointer, and
/// the run's final `model/` directory.
///
/// `@unchecked Sendable`: the save queue reads `snapshot` and sets `saveError` only between `save` and the next
/// `waitForSave`, during which the coordinator's thread touches neither.
final class Checkpointer: CheckpointSnapshot, @unchecked Sendable {
    let directory: CheckpointDirectory
    let layout: ParameterLayout
    let every: Int
    let keepLast: Int
    let keepEvery: Int
    /// Whether the exported classifier reads each text twice (`classification.echo`).
    let echoInputs: Bool
    /// Replica 0's state as of the last handoff; what the save queue writes.
    let snapshot: WorkerState
    /// Entered while a save's thread runs.
    private let saving = DispatchGroup()
    private var saveError: Error?
    /// Between `arriving()` and `arrived()`: the snapshot's buffers are still being received.
    private var isArriving = false
    /// A save asked for while the snapshot was arriving, started by `arrived()`.
    private var deferredSave: (state: CheckpointState, isBest: Bool)?

    init(config: RunConfig, layout: ParameterLayout) {
        directory = CheckpointDirectory(
            root: URL(fileURLWithPath: config.output.directory).appendingPathComponent("checkpoints"))
        self.layout = layout
        every = config.checkpoint.every
        keepLast = config.checkpoint.keepLast
        keepEvery = config.checkpoint.keepEvery
        echoInputs = config.classification?.echo ?? false
        snapshot = WorkerState(count: layout.count)
    }

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

    func arriving() {
        isArriving = true
    }

    func arrived() {
        isArriving = false
        if let (state, isBest) = deferredSave {
            deferredSave = nil
            save(state, isBest: isBest)
        }
    }

    /// Writes `snapshot` with `state` on a thread of its own; training continues meanwhile. The snapshot is not
    /// touched again until `waitForSave()` has returned. `isBest`: point `best` at it once written. While the
    /// snapshot is still arriving, the save starts when it has arrived.
    ///
    /// The thread runs at the lowest priority (nice 19; on Linux a thread's own): where the workers keep every
    /// core busy, as on a small machine, serialising, hashing and writing then take the time they leave idle
    /// instead of slowing their steps.
    func save(_ state: CheckpointState, isBest: Bool) {
        if isArriving {
            deferredSave = (state, isBest)
            return
        }
        saving.enter()
        let writer = Thread { [self] in
            defer { saving.leave() }
            _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, 19)
            do {
                let saved = try TrainingCheckpoint.save(snapshot: snapshot, state: state, layout: layout, to: directory)
                if isBest { try directory.setBest(saved) }
                directory.applyRetention(keepLast: keepLast, keepEvery: keepEvery, protected: saved)
            } catch {
                saveError = error
            }
        }
        writer.name = "lockstep.checkpoint-writer"
        writer.start()
    }

    /// Waits for the save in flight, and rethrows its failure.
    func waitForSave() throws {
        saving.wait()
        if let error = saveError {
            saveError = nil
            throw error
        }
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
            temperature: temperature, echoInputs: echoInputs, tokenizer: tokenizer, to: modelDirectory)
    }
}
