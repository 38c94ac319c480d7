import Foundation

/// Everything a training run needs, read from one YAML file (see `configs/*.yaml`, where every key is
/// documented) plus `--set dotted.key=value` overrides. Unknown keys are errors. Relative paths are taken
/// relative to the directory the command runs in, as with nanoGPT and llm.c.
public struct RunConfig: Codable, Equatable, Sendable {
    public var model: ModelSettings
    public var data: DataSettings
    public var training: TrainingSettings
    public var optimizer: OptimizerSettings
    /// The learning rate as a pure function of the step; its `totalSteps` is `training.max_steps`.
    public var schedule: LearningRateSchedule
    public var evaluation: EvaluationSettings
    public var output: OutputSettings
    public var checkpoint: CheckpointSettings
    public var distributed: DistributedSettings

    public struct ModelSettings: Codable, Equatable, Sendable {
        /// A Hugging Face GPT-2 directory to take the architecture and starting weights from.
        public var initFrom: String?
        /// Defaults to the tokenizer's vocabulary size.
        public var vocabularySize: Int?
        public var contextLength: Int
        public var layers: Int
        public var heads: Int
        public var channels: Int
        /// Seeds the initial parameters (ignored with `init_from`).
        public var seed: UInt64
    }

    public enum ShardFormatName: String, Codable, CaseIterable, Sendable {
        case llmc, nanogpt
    }

    public struct DataSettings: Codable, Equatable, Sendable {
        /// Glob of training token shards, e.g. `data/shakespeare/train_*.bin`.
        public var train: String
        /// Glob of validation token shards; evaluation is off without it.
        public var validation: String?
        public var format: ShardFormatName
        /// `bytes` for the plain byte vocabulary, or a directory with `vocab.json` + `merges.txt`.
        public var tokenizer: String
        public var shuffle: Bool
        public var seed: UInt64
    }

    public struct TrainingSettings: Codable, Equatable, Sendable {
        public var maxSteps: Int
        /// Stop (and save) after this many minutes even if `max_steps` is not reached.
        public var timeBudgetMinutes: Double?
        /// Tokens per window; at most `model.context_length`.
        public var sequenceLength: Int
        /// Sequences per forward/backward pass on one worker.
        public var microBatchSize: Int
        /// Tokens per optimizer step over all workers; the gradient accumulation count follows from it.
        public var globalBatchTokens: Int
        /// Clip the global gradient norm to this (0 turns clipping off).
        public var gradClip: Double
        /// Consecutive non-finite updates (skipped) after which the run stops.
        public var maxNonFiniteSteps: Int
    }

    public struct OptimizerSettings: Codable, Equatable, Sendable {
        public var beta1: Double
        public var beta2: Double
        public var epsilon: Double
        public var weightDecay: Double
    }

    public struct EvaluationSettings: Codable, Equatable, Sendable {
        /// Evaluate every this many steps (0: only at the end).
        public var every: Int
        /// Validation windows per evaluation (0: all of them).
        public var maxWindows: Int
    }

    public struct OutputSettings: Codable, Equatable, Sendable {
        public var directory: String
        /// Console line and JSONL record every this many steps.
        public var logEvery: Int
        public var tensorboard: Bool
    }

    public struct CheckpointSettings: Codable, Equatable, Sendable {
        /// Save every this many steps (0: only at the end).
        public var every: Int
        public var keepLast: Int
        /// Also keep every checkpoint whose step is a multiple of this (0: none).
        public var keepEvery: Int
    }

    public enum GradientSync: String, Codable, CaseIterable, Sendable {
        /// Buckets allreduced while backward still runs.
        case bucketed
        /// One allreduce of all gradients after backward, for comparison.
        case single
    }

    public struct DistributedSettings: Codable, Equatable, Sendable {
        public var workers: Int
        public var gradientSync: GradientSync
        /// OpenBLAS threads per worker.
        public var threadsPerWorker: Int
        /// Compare parameter checksums across workers every this many steps (0: never).
        public var checkReplicasEvery: Int
    }

    /// Reads a config file; errors name the file, line and key.
    public static func load(file: URL, overrides: [String] = []) throws -> RunConfig {
        let text: String
        do {
            text = try String(contentsOf: file, encoding: .utf8)
        } catch {
            throw ConfigError(file: file.path, key: "", message: "cannot read the config file (\(error.localizedDescription))")
        }
        return try RunConfig(yaml: text, file: file.path, overrides: overrides)
    }

    public init(yaml text: String, file: String = "<config>", overrides: [String] = []) throws {
        let root = try ConfigSection.root(yaml: text, file: file, overrides: overrides)

        let model = try root.section("model")
        self.model = ModelSettings(
            initFrom: try model.optionalString("init_from"),
            vocabularySize: try model.optionalInt("vocab_size", minimum: 1),
            contextLength: try model.int("context_length", default: 256, minimum: 1),
            layers: try model.int("layers", default: 4, minimum: 1),
            heads: try model.int("heads", default: 4, minimum: 1),
            channels: try model.int("channels", default: 128, minimum: 1),
            seed: UInt64(try model.int("seed", default: 1337, minimum: 0)))
        if self.model.channels % self.model.heads != 0 {
            throw model.invalid("channels", "must be a multiple of model.heads (\(self.model.heads))")
        }

        let data = try root.section("data")
        guard let train = try data.optionalString("train") else {
            throw data.invalid("train", "required: a glob of training token shards, e.g. data/shakespeare/train_*.bin")
        }
        self.data = DataSettings(
            train: train,
            validation: try data.optionalString("validation"),
            format: try data.choice("format", default: .llmc),
            tokenizer: try data.string("tokenizer", default: "bytes"),
            shuffle: try data.bool("shuffle", default: true),
            seed: UInt64(try data.int("seed", default: 1234, minimum: 0)))

        let training = try root.section("training")
        let sequenceLength = try training.int("sequence_length", default: self.model.contextLength, minimum: 1)
        if sequenceLength > self.model.contextLength {
            throw training.invalid(
                "sequence_length", "\(sequenceLength) exceeds model.context_length (\(self.model.contextLength))")
        }
        let microBatchSize = try training.int("micro_batch_size", default: 8, minimum: 1)
        self.training = TrainingSettings(
            maxSteps: try training.int("max_steps", default: 1000, minimum: 1),
            timeBudgetMinutes: try training.optionalDouble("time_budget_minutes", minimum: 0),
            sequenceLength: sequenceLength,
            microBatchSize: microBatchSize,
            globalBatchTokens: try training.int(
                "global_batch_tokens", default: microBatchSize * sequenceLength, minimum: 1),
            gradClip: try training.double("grad_clip", default: 1.0, minimum: 0),
            maxNonFiniteSteps: try training.int("max_nonfinite_steps", default: 5, minimum: 1))

        let optimizer = try root.section("optimizer")
        self.optimizer = OptimizerSettings(
            beta1: try optimizer.double("beta1", default: 0.9, minimum: 0),
            beta2: try optimizer.double("beta2", default: 0.95, minimum: 0),
            epsilon: try optimizer.double("epsilon", default: 1e-8, minimum: 0),
            weightDecay: try optimizer.double("weight_decay", default: 0.1, minimum: 0))

        let schedule = try root.section("schedule")
        let learningRate = try schedule.double("learning_rate", default: 6e-4, minimum: 0)
        self.schedule = LearningRateSchedule(
            kind: try schedule.choice("kind", default: .cosine),
            peak: learningRate,
            minimum: try schedule.double("min_learning_rate", default: learningRate / 10, minimum: 0),
            warmupSteps: try schedule.int("warmup_steps", default: 0, minimum: 0),
            totalSteps: self.training.maxSteps,
            decaySteps: try schedule.optionalInt("decay_steps", minimum: 1))
        do {
            try self.schedule.validate()
        } catch let error as LearningRateSchedule.ValidationError {
            let key = String(error.key.split(separator: ".").last ?? "")
            throw key == "max_steps" ? training.invalid("max_steps", error.message) : schedule.invalid(key, error.message)
        }

        let evaluation = try root.section("evaluation")
        self.evaluation = EvaluationSettings(
            every: try evaluation.int("every", default: 100, minimum: 0),
            maxWindows: try evaluation.int("max_windows", default: 64, minimum: 0))

        let output = try root.section("output")
        self.output = OutputSettings(
            directory: try output.string("directory", default: "runs/default"),
            logEvery: try output.int("log_every", default: 10, minimum: 1),
            tensorboard: try output.bool("tensorboard", default: true))

        let checkpoint = try root.section("checkpoint")
        self.checkpoint = CheckpointSettings(
            every: try checkpoint.int("every", default: 0, minimum: 0),
            keepLast: try checkpoint.int("keep_last", default: 3, minimum: 1),
            keepEvery: try checkpoint.int("keep_every", default: 0, minimum: 0))

        let distributed = try root.section("distributed")
        self.distributed = DistributedSettings(
            workers: try distributed.int("workers", default: 1, minimum: 1),
            gradientSync: try distributed.choice("gradient_sync", default: .bucketed),
            threadsPerWorker: try distributed.int("threads_per_worker", default: 1, minimum: 1),
            checkReplicasEvery: try distributed.int("check_replicas_every", default: 100, minimum: 0))

        try root.finish()
        _ = try accumulationSteps(workers: self.distributed.workers, file: file)
    }

    /// Micro-steps per optimizer step on each worker: global tokens / (workers × micro batch × T).
    /// The global batch is fixed in tokens, so changing the number of workers keeps the data per step.
    public func accumulationSteps(workers: Int, file: String = "<config>") throws -> Int {
        let tokensPerMicroStep = workers * training.microBatchSize * training.sequenceLength
        guard training.globalBatchTokens % tokensPerMicroStep == 0 else {
            throw ConfigError(
                file: file, key: "training.global_batch_tokens",
                message: """
                    \(training.globalBatchTokens) is not a multiple of workers × micro_batch_size × sequence_length \
                    = \(workers) × \(training.microBatchSize) × \(training.sequenceLength) = \(tokensPerMicroStep)
                    """)
        }
        return training.globalBatchTokens / tokensPerMicroStep
    }

    /// Windows of `sequence_length + 1` tokens in one global batch.
    public var globalBatchWindows: Int { training.globalBatchTokens / training.sequenceLength }
}
