import Foundation
import LockstepData
import LockstepFormats
import LockstepModel
import LockstepConfig

/// `state.json` of a checkpoint.
public struct CheckpointState: Codable, Equatable, Sendable {
    /// Bumped when the layout of a checkpoint changes; a newer checkpoint is refused, not misread.
    public static let currentFormatVersion = 1

    public var formatVersion: Int
    /// Optimizer steps completed.
    public var step: Int
    public var optimizerStep: Int
    public var cursor: DataCursor
    public var config: RunConfig
    public var model: GPTConfig
    public var tokenizerVocabularySize: Int
    public var worldSize: Int
    /// Classifier runs only: label names in id order.
    public var labelNames: [String]?
    public var skippedSteps: Int
    public var lastLoss: Double?
    public var lastValidationLoss: Double?
    public var elapsedSeconds: Double
    /// Classifier runs only: the softmax temperature fitted on the dev set at the latest evaluation (1 before
    /// any); `predict` divides logits by it.
    public var temperature: Double? = nil
    /// Classifier runs only: the dev metrics and the best checkpoint so far, so a resumed run keeps both.
    public var selection: ModelSelection? = nil
    /// The loss-spike detector's window (`WorkerState.lossWindow`); nil in checkpoints from before it existed.
    public var lossWindow: [Double]? = nil
    /// The coordinator's loss-spike counts; nil in checkpoints from before they existed.
    public var spikes: SpikeCounts? = nil

    public init(
        formatVersion: Int = currentFormatVersion, step: Int, optimizerStep: Int, cursor: DataCursor, config: RunConfig,
        model: GPTConfig, tokenizerVocabularySize: Int, worldSize: Int, labelNames: [String]?, skippedSteps: Int,
        lastLoss: Double? = nil, lastValidationLoss: Double? = nil, elapsedSeconds: Double, temperature: Double? = nil,
        selection: ModelSelection? = nil, lossWindow: [Double]? = nil, spikes: SpikeCounts? = nil
    ) {
        self.formatVersion = formatVersion
        self.step = step
        self.optimizerStep = optimizerStep
        self.cursor = cursor
        self.config = config
        self.model = model
        self.tokenizerVocabularySize = tokenizerVocabularySize
        self.worldSize = worldSize
        self.labelNames = labelNames
        self.skippedSteps = skippedSteps
        self.lastLoss = lastLoss
        self.lastValidationLoss = lastValidationLoss
        self.elapsedSeconds = elapsedSeconds
        self.temperature = temperature
        self.selection = selection
        self.lossWindow = lossWindow
        self.spikes = spikes
    }
}

/// What the coordinator counts of loss spikes (`fault_tolerance.spike_sigma`), kept in checkpoints so that a
/// resumed run rolls back exactly when the uninterrupted one would.
public struct SpikeCounts: Codable, Equatable, Sendable {
    /// Spikes in a row up to now.
    public var inARow = 0
    /// The step (counting from 1) of the first spike of the current run of spikes; nil when `inARow` is 0.
    public var firstOfRow: Int? = nil
    /// Updates skipped as spikes over the whole run.
    public var skipped = 0
    /// Roll-backs to a checkpoint over the whole run.
    public var rollBacks = 0

    public init(inARow: Int = 0, firstOfRow: Int? = nil, skipped: Int = 0, rollBacks: Int = 0) {
        self.inARow = inARow
        self.firstOfRow = firstOfRow
        self.skipped = skipped
        self.rollBacks = rollBacks
    }
}

/// Reads and writes Lockstep checkpoints: `model.safetensors` (Hugging Face GPT-2 names),
/// `optimizer.safetensors` (`m.<name>`, `v.<name>`), `state.json`, all under `checksums.json`.
public enum TrainingCheckpoint {
    public static func save(
        snapshot: WorkerState, state: CheckpointState, layout: ParameterLayout, to directory: CheckpointDirectory
    ) throws -> URL {
        try directory.save(step: state.step, files: files(snapshot: snapshot, state: state, layout: layout))
    }

    /// A checkpoint's files holding `snapshot` and `state`, for `CheckpointDirectory` to write and checksum.
    static func files(
        snapshot: WorkerState, state: CheckpointState, layout: ParameterLayout
    ) -> [(name: String, write: (URL) throws -> Void)] {
        [
            ("model.safetensors", { url in
                try writeTensors(layout: layout, buffers: [("", snapshot.parameters)], to: url)
            }),
            ("optimizer.safetensors", { url in
                try writeTensors(
                    layout: layout, buffers: [("m.", snapshot.firstMoments), ("v.", snapshot.secondMoments)], to: url)
            }),
            ("state.json", { url in
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                try encoder.encode(state).write(to: url)
            }),
        ]
    }

    static func writeTensors(
        layout: ParameterLayout, buffers: [(prefix: String, values: UnsafeMutableBufferPointer<Float>)], to url: URL
    ) throws {
        var writer = SafeTensorsWriter()
        writer.metadata = ["format": "pt"]
        for (prefix, values) in buffers {
            try HuggingFaceModel.addTensors(from: UnsafeBufferPointer(values), layout: layout, to: &writer, prefix: prefix)
        }
        try writer.write(to: url)
    }

    public static func readState(_ directory: URL) throws -> CheckpointState {
        let url = directory.appendingPathComponent("state.json")
        let decoder = JSONDecoder()
        do {
            let state = try decoder.decode(CheckpointState.self, from: Data(contentsOf: url))
            if state.formatVersion > CheckpointState.currentFormatVersion {
                throw CheckpointError(
                    description: """
                        \(url.path): written by a newer Lockstep (format version \(state.formatVersion); this one reads \
                        up to \(CheckpointState.currentFormatVersion))
                        """)
            }
            if let problem = state.model.problems.first {
                throw CheckpointError(description: "\(url.path): model: \(problem)")
            }
            for (key, value, minimum) in [
                ("step", state.step, 0), ("optimizerStep", state.optimizerStep, 0), ("worldSize", state.worldSize, 1),
                ("tokenizerVocabularySize", state.tokenizerVocabularySize, 1),
            ] where value < minimum {
                throw CheckpointError(description: "\(url.path): \(key) is \(value), expected an integer ≥ \(minimum)")
            }
            return state
        } catch let error as CheckpointError {
            throw error
        } catch {
            throw CheckpointError(description: "\(url.path): not a valid checkpoint state (\(error))")
        }
    }

    /// Verifies checksums, refuses a checkpoint whose model shape differs from `expectedModel`, and fills
    /// `snapshot`.
    public static func load(_ directory: URL, expectedModel: GPTConfig, into snapshot: WorkerState) throws
        -> CheckpointState
    {
        try CheckpointDirectory.verify(directory)
        let state = try readState(directory)
        if state.model != expectedModel {
            throw CheckpointError(
                description: """
                    \(directory.path): the checkpoint's model (\(describe(state.model))) differs from the config's \
                    (\(describe(expectedModel)))
                    """)
        }
        let layout = ParameterLayout(config: expectedModel)
        try readTensors(layout: layout, prefix: "", into: snapshot.parameters, from: directory.appendingPathComponent("model.safetensors"))
        let optimizer = directory.appendingPathComponent("optimizer.safetensors")
        try readTensors(layout: layout, prefix: "m.", into: snapshot.firstMoments, from: optimizer)
        try readTensors(layout: layout, prefix: "v.", into: snapshot.secondMoments, from: optimizer)
        snapshot.optimizerStep = state.optimizerStep
        snapshot.cursor = state.cursor
        snapshot.lossWindow = state.lossWindow ?? []
        return state
    }

    public static func readTensors(
        layout: ParameterLayout, prefix: String, into buffer: UnsafeMutableBufferPointer<Float>, from url: URL
    ) throws {
        let file = try SafeTensorsFile.read(url)
        for tensor in layout.tensors {
            let stored = try file.tensor(named: prefix + tensor.name)
            guard stored.shape == tensor.shape else {
                throw CheckpointError(description: "\(url.path): \(stored.name) has shape \(stored.shape), expected \(tensor.shape)")
            }
            try file.copyFloats(named: stored.name, into: UnsafeMutableBufferPointer(rebasing: buffer[tensor.range]))
        }
    }

    public static func describe(_ config: GPTConfig) -> String {
        "\(config.family.rawValue), vocab \(config.vocabularySize), context \(config.contextLength), "
            + "\(config.layerCount) layers, \(config.headCount) heads"
            + (config.keyValueHeads != config.headCount ? " (\(config.keyValueHeads) key/value)" : "")
            + ", \(config.channels) channels"
            + (config.labelCount.map { ", \($0) labels" } ?? "")
    }
}
