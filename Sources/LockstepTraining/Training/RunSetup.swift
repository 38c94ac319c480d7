import Foundation
import LockstepData
import LockstepModel
import LockstepTokenizer

/// Turns a `RunConfig` into the objects a run needs. Shared by every role so that the coordinator and the
/// workers derive the same model shape and data order from the same config.
public enum RunSetup {
    /// `bytes` or a directory holding `vocab.json` + `merges.txt`.
    public static func tokenizer(_ config: RunConfig) throws -> BPETokenizer {
        config.data.tokenizer == "bytes"
            ? BPETokenizer.bytes() : try BPETokenizer.load(directory: URL(fileURLWithPath: config.data.tokenizer))
    }

    /// The architecture: from `model.init_from`'s config.json when given, else from the `model` section with
    /// the tokenizer's vocabulary size unless `model.vocab_size` says otherwise.
    public static func modelConfig(_ config: RunConfig, tokenizer: some Tokenizer) throws -> GPTConfig {
        if let directory = config.model.initFrom {
            let loaded = try HuggingFaceGPT2.loadConfig(directory: URL(fileURLWithPath: directory))
            if loaded.contextLength < config.training.sequenceLength {
                throw ConfigError(
                    file: directory + "/config.json", key: "training.sequence_length",
                    message: "\(config.training.sequenceLength) exceeds the model's n_positions \(loaded.contextLength)")
            }
            return loaded
        }
        let vocabularySize = config.model.vocabularySize ?? tokenizer.vocabularySize
        if vocabularySize < tokenizer.vocabularySize {
            throw ConfigError(
                file: "<config>", key: "model.vocab_size",
                message: "\(vocabularySize) is smaller than the tokenizer's vocabulary (\(tokenizer.vocabularySize))")
        }
        return GPTConfig(
            vocabularySize: vocabularySize, contextLength: config.model.contextLength,
            layerCount: config.model.layers, headCount: config.model.heads, channels: config.model.channels)
    }

    /// A replica's model with its starting weights: `init_from`'s, or fresh ones from `model.seed`.
    /// Every replica that calls this with the same config gets the same parameters.
    public static func model(_ config: RunConfig, modelConfig: GPTConfig) throws -> GPT {
        let model = GPT(
            config: modelConfig, batchSize: config.training.microBatchSize,
            sequenceLength: config.training.sequenceLength)
        if let directory = config.model.initFrom {
            try HuggingFaceGPT2.load(directory: URL(fileURLWithPath: directory), into: model)
        } else {
            model.initializeRandomly(seed: config.model.seed)
        }
        return model
    }

    public static func shardFormat(_ config: RunConfig) -> ShardFormat {
        switch config.data.format {
        case .llmc: return .llmc
        case .nanogpt: return .nanogpt
        }
    }

    public static func dataset(pattern: String, config: RunConfig, modelConfig: GPTConfig) throws -> TokenWindowDataset {
        try TokenWindowDataset(
            files: try TokenWindowDataset.files(matching: pattern), format: shardFormat(config),
            sequenceLength: config.training.sequenceLength, vocabularySize: modelConfig.vocabularySize)
    }

    /// A replica with a fresh model (see `model(_:modelConfig:)`).
    public static func replica(_ config: RunConfig, modelConfig: GPTConfig, group: ReplicaGroup) throws -> WorkerReplica {
        try replica(config, model: model(config, modelConfig: modelConfig), group: group)
    }

    /// Replica `group.replicaIndex` of `group.replicaCount`: `model`, its slice of the training stream, and
    /// the validation set.
    public static func replica(_ config: RunConfig, model: GPT, group: ReplicaGroup) throws -> WorkerReplica {
        let modelConfig = model.config
        let train = try dataset(pattern: config.data.train, config: config, modelConfig: modelConfig)
        let validation = try config.data.validation.map {
            try dataset(pattern: $0, config: config, modelConfig: modelConfig)
        }
        let stream = try PretrainingStream(
            dataset: train, globalBatchWindows: config.globalBatchWindows, seed: config.data.seed,
            shuffle: config.data.shuffle, rank: group.replicaIndex, worldSize: group.replicaCount)
        return try WorkerReplica(config: config, model: model, stream: stream, validation: validation, group: group)
    }
}

extension RunSetup {
    /// The checkpoint to resume from: `auto` means the newest valid one under the run's output directory
    /// (nil when there is none: a fresh start), anything else is a checkpoint directory that must be valid.
    public static func checkpointToResume(
        _ config: RunConfig, resume: String, rejected: (String) -> Void
    ) throws -> URL? {
        if resume == "auto" {
            let directory = CheckpointDirectory(
                root: URL(fileURLWithPath: config.output.directory).appendingPathComponent("checkpoints"))
            return directory.newestValid(rejected: rejected)
        }
        let url = URL(fileURLWithPath: resume)
        try CheckpointDirectory.verify(url)
        return url
    }

    /// Loads `checkpoint` into `snapshot` after checking it fits this run: same model shape, same tokenizer
    /// vocabulary size, same global batch (so that the data cursor means the same windows).
    public static func loadCheckpoint(
        _ checkpoint: URL, config: RunConfig, modelConfig: GPTConfig, tokenizerVocabularySize: Int,
        into snapshot: TrainingSnapshot
    ) throws -> CheckpointState {
        let state = try TrainingCheckpoint.load(checkpoint, expectedModel: modelConfig, into: snapshot)
        if state.tokenizerVocabularySize != tokenizerVocabularySize {
            throw CheckpointError(
                description: """
                    \(checkpoint.path): trained with a tokenizer of \(state.tokenizerVocabularySize) entries; \
                    data.tokenizer has \(tokenizerVocabularySize)
                    """)
        }
        if state.config.globalBatchWindows != config.globalBatchWindows
            || state.config.training.sequenceLength != config.training.sequenceLength
        {
            throw CheckpointError(
                description: """
                    \(checkpoint.path): trained with \(state.config.globalBatchWindows) windows of \
                    \(state.config.training.sequenceLength) tokens per step; the config asks for \
                    \(config.globalBatchWindows) of \(config.training.sequenceLength) (training.global_batch_tokens, \
                    training.sequence_length must stay the same to continue the data stream)
                    """)
        }
        return state
    }
}
