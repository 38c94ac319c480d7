import Foundation
import LockstepData
import LockstepModel

/// Everything a training run needs, read from one YAML file (see `configs/*.yaml`, where every key is
/// documented) plus `--set dotted.key=value` overrides. Unknown keys are errors. Relative paths are taken
/// relative to the directory the command runs in, as with nanoGPT and llm.c.
public struct RunConfig: Codable, Equatable, Sendable {
    /// What the model learns: next tokens (pretraining) or one label per text (fine-tuning a classifier).
    public var task: Task
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
    /// Deadlines of waits on other ranks. Checkpoints written before this section existed decode with its defaults.
    public var faultTolerance: FaultToleranceSettings
    /// Set exactly when `task` is `classification`.
    public var classification: ClassificationSettings?

    public enum Task: String, Codable, CaseIterable, Sendable {
        case languageModel = "language_model"
        case classification
    }

    public struct ModelSettings: Codable, Equatable, Sendable {
        /// Where the architecture and starting weights come from: a Hugging Face GPT-2 or Llama directory, or
        /// (for fine-tuning) a Lockstep checkpoint directory.
        public var initFrom: String?
        /// `gpt2` or `llama`: which parts the blocks are built from (ignored with `init_from`).
        public var family: ModelFamily
        /// Defaults to the tokenizer's vocabulary size.
        public var vocabularySize: Int?
        public var contextLength: Int
        public var layers: Int
        public var heads: Int
        public var channels: Int
        /// Llama: key/value heads for grouped-query attention (nil: `heads`).
        public var keyValueHeads: Int?
        /// Llama: the MLP's hidden width (nil: 8C/3 rounded up to a multiple of 64).
        public var intermediateSize: Int?
        /// Llama: the rotary base (nil: 10000).
        public var ropeTheta: Double?
        /// Llama: whether the head is the token table (nil: no, as Llama).
        public var tieEmbeddings: Bool?
        /// Seeds the initial parameters (ignored with `init_from`).
        public var seed: UInt64

        public init(
            initFrom: String?, family: ModelFamily = .gpt2, vocabularySize: Int?, contextLength: Int, layers: Int,
            heads: Int, channels: Int, keyValueHeads: Int? = nil, intermediateSize: Int? = nil, ropeTheta: Double? = nil,
            tieEmbeddings: Bool? = nil, seed: UInt64
        ) {
            self.initFrom = initFrom
            self.family = family
            self.vocabularySize = vocabularySize
            self.contextLength = contextLength
            self.layers = layers
            self.heads = heads
            self.channels = channels
            self.keyValueHeads = keyValueHeads
            self.intermediateSize = intermediateSize
            self.ropeTheta = ropeTheta
            self.tieEmbeddings = tieEmbeddings
            self.seed = seed
        }

        private enum CodingKeys: String, CodingKey {
            case initFrom, family, vocabularySize, contextLength, layers, heads, channels, keyValueHeads
            case intermediateSize, ropeTheta, tieEmbeddings, seed
        }

        /// Configs saved in checkpoints before the Llama family existed have no `family`: GPT-2.
        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            self.init(
                initFrom: try c.decodeIfPresent(String.self, forKey: .initFrom),
                family: try c.decodeIfPresent(ModelFamily.self, forKey: .family) ?? .gpt2,
                vocabularySize: try c.decodeIfPresent(Int.self, forKey: .vocabularySize),
                contextLength: try c.decode(Int.self, forKey: .contextLength), layers: try c.decode(Int.self, forKey: .layers),
                heads: try c.decode(Int.self, forKey: .heads), channels: try c.decode(Int.self, forKey: .channels),
                keyValueHeads: try c.decodeIfPresent(Int.self, forKey: .keyValueHeads),
                intermediateSize: try c.decodeIfPresent(Int.self, forKey: .intermediateSize),
                ropeTheta: try c.decodeIfPresent(Double.self, forKey: .ropeTheta),
                tieEmbeddings: try c.decodeIfPresent(Bool.self, forKey: .tieEmbeddings),
                seed: try c.decode(UInt64.self, forKey: .seed))
        }

        /// The model's shape for a vocabulary of `vocabularySize` (this config's `vocab_size`, or the tokenizer's).
        public func gptConfig(vocabularySize: Int) -> GPTConfig {
            GPTConfig(
                family: family, vocabularySize: vocabularySize, contextLength: contextLength, layerCount: layers,
                headCount: heads, channels: channels, keyValueHeadCount: keyValueHeads, intermediateSize: intermediateSize,
                ropeTheta: ropeTheta ?? 10_000, tieEmbeddings: tieEmbeddings)
        }
    }

    public struct DataSettings: Codable, Equatable, Sendable {
        /// Glob of training token shards, e.g. `data/shakespeare/train_*.bin`; for classification, labeled
        /// files (TSV, CSV or JSONL).
        public var train: String
        /// Glob of validation token shards (for classification, the labeled dev set used for model
        /// selection); evaluation is off without it.
        public var validation: String?
        public var format: ShardFormat
        /// `bytes` for the plain byte vocabulary, or a directory with `vocab.json` + `merges.txt`. When the
        /// key is absent and `model.init_from` is given, the tokenizer of the model started from (`init_from`
        /// itself: a checkpoint or a Hugging Face directory holding `vocab.json` + `merges.txt`).
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
        /// The probability of zeroing each output of a block's attention and MLP branches before its residual
        /// add, and each feature a classifier's head reads, while training (0: none). Evaluation never drops.
        public var dropout: Double = 0
    }

    /// Which optimizer updates the parameters (`optimizer.kind`).
    public enum OptimizerKind: String, Codable, CaseIterable, Sendable {
        /// AdamW on every tensor.
        case adamw
        /// Muon on the matrices inside the blocks, AdamW on the embeddings, heads, norms and biases.
        case muon
    }

    public struct OptimizerSettings: Codable, Equatable, Sendable {
        public var kind: OptimizerKind
        public var beta1: Double
        public var beta2: Double
        public var epsilon: Double
        /// Decoupled weight decay, for AdamW's matrices and tables and for Muon's matrices.
        public var weightDecay: Double
        /// Muon's peak learning rate; the schedule scales it as it scales `schedule.learning_rate`.
        public var muonLearningRate: Double
        /// Muon's momentum (Nesterov).
        public var muonMomentum: Double

        public init(
            kind: OptimizerKind = .adamw, beta1: Double = 0.9, beta2: Double = 0.95, epsilon: Double = 1e-8,
            weightDecay: Double = 0.1, muonLearningRate: Double = 0.02, muonMomentum: Double = 0.95
        ) {
            self.kind = kind
            self.beta1 = beta1
            self.beta2 = beta2
            self.epsilon = epsilon
            self.weightDecay = weightDecay
            self.muonLearningRate = muonLearningRate
            self.muonMomentum = muonMomentum
        }

        /// Keys missing in checkpoints written before Muon existed take their defaults (AdamW, as they trained).
        public init(from decoder: Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            let defaults = OptimizerSettings()
            self.init(
                kind: try container.decodeIfPresent(OptimizerKind.self, forKey: .kind) ?? defaults.kind,
                beta1: try container.decode(Double.self, forKey: .beta1),
                beta2: try container.decode(Double.self, forKey: .beta2),
                epsilon: try container.decode(Double.self, forKey: .epsilon),
                weightDecay: try container.decode(Double.self, forKey: .weightDecay),
                muonLearningRate: try container.decodeIfPresent(Double.self, forKey: .muonLearningRate)
                    ?? defaults.muonLearningRate,
                muonMomentum: try container.decodeIfPresent(Double.self, forKey: .muonMomentum) ?? defaults.muonMomentum)
        }
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
        /// ZeRO-1: each worker holds the AdamW moments of its own shard of the parameters only, receives the
        /// gradient sum of that shard (reduce-scatter), updates it, and the workers all-gather the parameters.
        public var shardOptimizer: Bool = false
        /// With `gradient_sync: bucketed`: a thread of each worker's own moves the buckets in flight while
        /// backward computes (MPI progresses a non-blocking transfer only inside MPI calls), instead of tests
        /// between backward's kernels alone.
        public var progressThread: Bool = false
        /// With `shard_optimizer` and every worker on one host: the parameters (one copy) and every worker's
        /// gradients live in memory all workers map, and each worker sums its shard of the gradients by reading
        /// the others' where backward wrote them, instead of MPI's reduce-scatter and all-gather.
        public var sharedMemory: Bool = true
    }

    public struct FaultToleranceSettings: Codable, Equatable, Sendable {
        /// Seconds any wait on another rank may last (plans, reports, gradient sync, checkpoint handoff,
        /// evaluation logits, replica checks, the launch) before the job ends naming the rank and the phase.
        public var hangTimeoutSeconds: Double
        /// Loss spikes: a step whose global loss exceeds the mean of the last `spikeWindow` losses by more
        /// than this many standard deviations skips its update on every worker. 0: detection off.
        public var spikeSigma: Double
        /// Steps of (non-spike, finite) losses the spike detector compares against; it acts once it has them.
        public var spikeWindow: Int
        /// This many spikes in a row reload the last checkpoint's parameters and optimizer state, keeping the
        /// data moving forward (0: never; the spikes are only skipped).
        public var maxSpikesInARow: Int
        /// Keys of `resumeCheckedKeys` that a resume may change on purpose (e.g. `training.max_steps`).
        public var allowResumeChanges: [String]
        /// How often `lockstep train` relaunches a failed job from its newest valid checkpoint before it gives
        /// up (0: never; `--max-restarts` overrides).
        public var maxRestarts: Int
        /// The fewest workers a relaunch may continue on after hosts were lost.
        public var minWorkers: Int

        /// The settings a resume compares with the checkpoint's config, refusing a difference unless the key is
        /// in `allow_resume_changes`: the data stream, the label names, the schedule's length and the optimizer's
        /// kind (what its state in the checkpoint means).
        public static let resumeCheckedKeys = [
            "data.train", "data.validation", "data.format", "data.seed", "data.shuffle", "classification.labels",
            "training.max_steps", "schedule.kind", "optimizer.kind",
        ]

        public init(
            hangTimeoutSeconds: Double = 300, spikeSigma: Double = 0, spikeWindow: Int = 128, maxSpikesInARow: Int = 5,
            allowResumeChanges: [String] = [], maxRestarts: Int = 0, minWorkers: Int = 1
        ) {
            self.hangTimeoutSeconds = hangTimeoutSeconds
            self.spikeSigma = spikeSigma
            self.spikeWindow = spikeWindow
            self.maxSpikesInARow = maxSpikesInARow
            self.allowResumeChanges = allowResumeChanges
            self.maxRestarts = maxRestarts
            self.minWorkers = minWorkers
        }

        /// Keys missing in a checkpoint written before they existed take their defaults.
        public init(from decoder: Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            let defaults = FaultToleranceSettings()
            hangTimeoutSeconds = try container.decodeIfPresent(Double.self, forKey: .hangTimeoutSeconds) ?? defaults.hangTimeoutSeconds
            spikeSigma = try container.decodeIfPresent(Double.self, forKey: .spikeSigma) ?? defaults.spikeSigma
            spikeWindow = try container.decodeIfPresent(Int.self, forKey: .spikeWindow) ?? defaults.spikeWindow
            maxSpikesInARow = try container.decodeIfPresent(Int.self, forKey: .maxSpikesInARow) ?? defaults.maxSpikesInARow
            allowResumeChanges = try container.decodeIfPresent([String].self, forKey: .allowResumeChanges) ?? []
            maxRestarts = try container.decodeIfPresent(Int.self, forKey: .maxRestarts) ?? defaults.maxRestarts
            minWorkers = try container.decodeIfPresent(Int.self, forKey: .minWorkers) ?? defaults.minWorkers
        }

        /// Whether the spike detector is on.
        public var detectsSpikes: Bool { spikeSigma > 0 }
    }

    /// How the cross-entropy weighs the classes.
    public enum ClassWeights: Codable, Equatable, Sendable {
        case none
        /// n / (K · count of the class in the training set), as scikit-learn's `class_weight="balanced"`.
        case balanced
        /// One positive weight per label, in label-id order.
        case explicit([Double])
    }

    /// The `classification` section: how labeled files are read and how the classifier is fine-tuned.
    public struct ClassificationSettings: Codable, Equatable, Sendable {
        /// nil: from each file's extension.
        public var format: LabeledFileFormat?
        /// nil: column 0 (TSV, CSV) or key `text` (JSONL).
        public var textField: FieldSelector?
        /// nil: column 1 (TSV, CSV) or key `label` (JSONL).
        public var labelField: FieldSelector?
        /// Whether TSV and CSV files start with a header row (default: true when a field is given by name).
        public var header: Bool
        public var invalidUTF8: InvalidUTF8Handling
        /// Label names in id order; nil: the sorted distinct labels of the training files.
        public var labels: [String]?
        public var classWeights: ClassWeights
        /// Train the head only: the transformer's weights stay as loaded, and backward stops at the head.
        public var freezeBackbone: Bool
        /// Peak learning rate of `score.weight` (nil: `schedule.learning_rate`); follows the same schedule.
        public var headLearningRate: Double?
        /// Layer-wise decay: block i of L learns at `decay^(L − i)` × the rate, the embeddings at
        /// `decay^(L + 1)`; `ln_f` and the head at the full rate. 1 turns it off.
        public var layerDecay: Double
        /// Keeps the best checkpoint by this dev metric; the final `model/` is the best one.
        public var metric: SelectionMetric
        /// Stop after this many evaluations without a better metric (0: never stop early).
        public var patience: Int
        /// Fit a softmax temperature on the dev set at each evaluation and store it with the checkpoint.
        public var calibrate: Bool
        /// "Echo" inputs: the model reads each text twice and the head reads the second copy's last token. A
        /// causal model's token sees only what precedes it; in the second copy every token has seen the whole
        /// text, in every layer. Costs twice the tokens (`training.sequence_length` must hold both copies).
        public var echo: Bool = false

        /// How to read the labeled file at `url` under these settings.
        public func fileOptions(for url: URL) throws -> LabeledFileOptions {
            LabeledFileOptions(
                format: try format ?? LabeledFileFormat(inferredFrom: url), textField: textField,
                labelField: labelField, hasHeader: header, invalidUTF8: invalidUTF8)
        }
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
        self.task = try root.choice("task", default: .languageModel)

        let model = try root.section("model")
        let family: ModelFamily = try model.choice("family", default: .gpt2)
        if family == .gpt2 {
            for key in ["kv_heads", "intermediate_size", "rope_theta", "tie_embeddings"] where model.has(key) {
                throw model.invalid(key, "applies to family: llama only (GPT-2 has multi-head attention, a 4x MLP, "
                    + "a learned position table and a tied head)")
            }
        }
        self.model = ModelSettings(
            initFrom: try model.optionalString("init_from"),
            family: family,
            vocabularySize: try model.optionalInt("vocab_size", minimum: 1, maximum: Int(Int32.max)),
            contextLength: try model.int("context_length", default: 256, minimum: 1, maximum: Self.sizeLimit),
            layers: try model.int("layers", default: 4, minimum: 1, maximum: 10_000),
            heads: try model.int("heads", default: 4, minimum: 1, maximum: Self.sizeLimit),
            channels: try model.int("channels", default: 128, minimum: 1, maximum: Self.sizeLimit),
            keyValueHeads: try model.optionalInt("kv_heads", minimum: 1, maximum: Self.sizeLimit),
            intermediateSize: try model.optionalInt("intermediate_size", minimum: 1, maximum: Self.sizeLimit),
            ropeTheta: try model.optionalDouble("rope_theta", minimum: 1),
            tieEmbeddings: model.has("tie_embeddings") ? try model.bool("tie_embeddings", default: false) : nil,
            seed: UInt64(try model.int("seed", default: 1337, minimum: 0)))
        if self.model.channels % self.model.heads != 0 {
            throw model.invalid("channels", "must be a multiple of model.heads (\(self.model.heads))")
        }
        if let kv = self.model.keyValueHeads, self.model.heads % kv != 0 {
            throw model.invalid("kv_heads", "must divide model.heads (\(self.model.heads)), found \(kv)")
        }
        if family == .llama, (self.model.channels / self.model.heads) % 2 != 0 {
            throw model.invalid(
                "heads", "channels / heads (\(self.model.channels / self.model.heads)) must be even for rotary positions")
        }
        if let theta = self.model.ropeTheta, !(theta > 1 && theta.isFinite) {
            throw model.invalid("rope_theta", "expected a finite number > 1, found \(theta)")
        }

        let data = try root.section("data")
        guard let train = try data.optionalString("train") else {
            throw data.invalid(
                "train",
                task == .classification
                    ? "required: labeled training files (TSV, CSV or JSONL), e.g. data/sst2/train.tsv"
                    : "required: a glob of training token shards, e.g. data/shakespeare/train_*.bin")
        }
        self.data = DataSettings(
            train: train,
            validation: try data.optionalString("validation"),
            format: try data.choice("format", default: .llmc),
            tokenizer: try data.string("tokenizer", default: self.model.initFrom ?? "bytes"),
            shuffle: try data.bool("shuffle", default: true),
            seed: UInt64(try data.int("seed", default: 1234, minimum: 0)))

        let training = try root.section("training")
        let sequenceLength = try training.int("sequence_length", default: self.model.contextLength, minimum: 1)
        if sequenceLength > self.model.contextLength {
            throw training.invalid(
                "sequence_length", "\(sequenceLength) exceeds model.context_length (\(self.model.contextLength))")
        }
        let microBatchSize = try training.int("micro_batch_size", default: 8, minimum: 1, maximum: Self.sizeLimit)
        let globalBatchSequences = try training.optionalInt("global_batch_size", minimum: 1)
        if globalBatchSequences != nil && training.has("global_batch_tokens") {
            throw training.invalid("global_batch_size", "give either global_batch_size (sequences) or global_batch_tokens, not both")
        }
        let defaultGlobalTokens = (globalBatchSequences ?? microBatchSize).multipliedReportingOverflow(by: sequenceLength)
        if defaultGlobalTokens.overflow || defaultGlobalTokens.partialValue > Self.tokenLimit {
            throw training.invalid(
                globalBatchSequences != nil ? "global_batch_size" : "micro_batch_size",
                "\(globalBatchSequences ?? microBatchSize) sequences × sequence_length \(sequenceLength) is more than "
                    + "\(Self.tokenLimit) tokens per step")
        }
        self.training = TrainingSettings(
            maxSteps: try training.int("max_steps", default: 1000, minimum: 1),
            timeBudgetMinutes: try training.optionalDouble("time_budget_minutes", minimum: 0),
            sequenceLength: sequenceLength,
            microBatchSize: microBatchSize,
            globalBatchTokens: try training.int(
                "global_batch_tokens", default: defaultGlobalTokens.partialValue, minimum: 1, maximum: Self.tokenLimit),
            gradClip: try training.double("grad_clip", default: 1.0, minimum: 0),
            maxNonFiniteSteps: try training.int("max_nonfinite_steps", default: 5, minimum: 1),
            dropout: try training.double("dropout", default: 0, minimum: 0, below: 1))

        let optimizer = try root.section("optimizer")
        self.optimizer = OptimizerSettings(
            kind: try optimizer.choice("kind", default: .adamw),
            beta1: try optimizer.double("beta1", default: 0.9, minimum: 0, below: 1),
            beta2: try optimizer.double("beta2", default: 0.95, minimum: 0, below: 1),
            epsilon: try optimizer.double("epsilon", default: 1e-8, positive: true),
            weightDecay: try optimizer.double("weight_decay", default: 0.1, minimum: 0),
            muonLearningRate: try optimizer.double("muon_learning_rate", default: 0.02, minimum: 0),
            muonMomentum: try optimizer.double("muon_momentum", default: 0.95, minimum: 0, below: 1))
        if self.optimizer.kind != .muon {
            for key in ["muon_learning_rate", "muon_momentum"] where optimizer.has(key) {
                throw optimizer.invalid(key, "applies only to optimizer.kind muon, but kind is \(self.optimizer.kind.rawValue)")
            }
        }

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
            checkReplicasEvery: try distributed.int("check_replicas_every", default: 100, minimum: 0),
            shardOptimizer: try distributed.bool("shard_optimizer", default: false),
            progressThread: try distributed.bool("progress_thread", default: false),
            sharedMemory: try distributed.bool("shared_memory", default: true))
        if self.distributed.shardOptimizer && self.optimizer.kind == .muon {
            throw distributed.invalid(
                "shard_optimizer",
                "cannot shard optimizer.kind muon: a shard of the parameter buffer cuts through matrices that Muon "
                    + "orthogonalises whole; set shard_optimizer: false (Muon splits its work over the workers anyway)")
        }

        let faultTolerance = try root.section("fault_tolerance")
        let hangTimeout = try faultTolerance.double("hang_timeout_seconds", default: 300, minimum: 0)
        if !(hangTimeout > 0) {
            throw faultTolerance.invalid("hang_timeout_seconds", "expected a number of seconds > 0, found \(hangTimeout)")
        }
        let spikeSigma = try faultTolerance.double("spike_sigma", default: 0, minimum: 0)
        let spikeWindow = try faultTolerance.int("spike_window", default: 128, minimum: 2)
        let maxSpikesInARow = try faultTolerance.int("max_spikes_in_a_row", default: 5, minimum: 0)
        let allowResumeChanges = try faultTolerance.optionalStrings("allow_resume_changes") ?? []
        for key in allowResumeChanges where !FaultToleranceSettings.resumeCheckedKeys.contains(key) {
            throw faultTolerance.invalid(
                "allow_resume_changes",
                "'\(key)' is not a key a resume checks (expected some of \(FaultToleranceSettings.resumeCheckedKeys.joined(separator: ", ")))")
        }
        self.faultTolerance = FaultToleranceSettings(
            hangTimeoutSeconds: hangTimeout, spikeSigma: spikeSigma, spikeWindow: spikeWindow,
            maxSpikesInARow: maxSpikesInARow, allowResumeChanges: allowResumeChanges,
            maxRestarts: try faultTolerance.int("max_restarts", default: 0, minimum: 0),
            minWorkers: try faultTolerance.int("min_workers", default: 1, minimum: 1))

        if task == .classification {
            let section = try root.section("classification")
            classification = try Self.classificationSettings(section, schedule: self.schedule)
            if classification!.patience > 0 && self.data.validation == nil {
                throw section.invalid("patience", "early stopping needs a dev set: set data.validation")
            }
        } else if root.has("classification") {
            throw root.invalid("classification", "this section needs task: classification")
        }

        try root.finish()
        _ = try accumulationSteps(workers: self.distributed.workers, file: file)
    }

    private static func classificationSettings(
        _ section: ConfigSection, schedule: LearningRateSchedule
    ) throws -> ClassificationSettings {
        func field(_ key: String) throws -> FieldSelector? {
            try section.optionalString(key).map { Int($0).map(FieldSelector.index) ?? .name($0) }
        }
        let textField = try field("text_field")
        let labelField = try field("label_field")
        let namedField = [textField, labelField].contains { if case .name = $0 { true } else { false } }
        let format: LabeledFileFormat? = section.has("format") ? try section.choice("format", default: .tsv) : nil
        let labels = try section.optionalStrings("labels")
        if let labels, Set(labels).count != labels.count || labels.isEmpty {
            throw section.invalid("labels", "expected a list of distinct label names")
        }
        var classWeights = ClassWeights.none
        if let weights = try section.optionalStrings("class_weights") {
            if weights == ["balanced"] {
                classWeights = .balanced
            } else if weights == ["none"] {
                classWeights = .none
            } else {
                let values = weights.compactMap(Double.init)
                guard values.count == weights.count, values.allSatisfy({ $0 > 0 && $0.isFinite }) else {
                    throw section.invalid("class_weights", "expected none, balanced, or a list of positive numbers (one per label)")
                }
                if let labels, labels.count != values.count {
                    throw section.invalid("class_weights", "has \(values.count) weights for \(labels.count) labels")
                }
                classWeights = .explicit(values)
            }
        }
        let headLearningRate = try section.optionalDouble("head_learning_rate", minimum: 0)
        if headLearningRate != nil && !(schedule.peak > 0) {
            throw section.invalid("head_learning_rate", "needs a positive schedule.learning_rate (the head follows its schedule)")
        }
        let layerDecay = try section.double("layer_decay", default: 1, minimum: 0)
        if !(layerDecay > 0 && layerDecay <= 1) {
            throw section.invalid("layer_decay", "expected a number in (0, 1], found \(layerDecay)")
        }
        return ClassificationSettings(
            format: format,
            textField: textField,
            labelField: labelField,
            header: try section.bool("header", default: namedField),
            invalidUTF8: try section.choice("invalid_utf8", default: .error),
            labels: labels,
            classWeights: classWeights,
            freezeBackbone: try section.bool("freeze_backbone", default: false),
            headLearningRate: headLearningRate,
            layerDecay: layerDecay,
            metric: try section.choice("metric", default: .accuracy),
            patience: try section.int("patience", default: 0, minimum: 0),
            calibrate: try section.bool("calibrate", default: true),
            echo: try section.bool("echo", default: false))
    }

    /// Upper limit of each model and batch size: far above anything that fits in memory, and small enough that
    /// products of a few sizes cannot overflow Int (the memory estimate then refuses what is still too large).
    static let sizeLimit = 1 << 24
    /// Upper limit of the tokens in one global batch.
    static let tokenLimit = 1 << 40

    /// Micro-steps per optimizer step on each worker: global tokens / (workers × micro batch × T).
    /// The global batch is fixed in tokens, so changing the number of workers keeps the data per step.
    public func accumulationSteps(workers: Int, file: String = "<config>") throws -> Int {
        let perWorker = training.microBatchSize.multipliedReportingOverflow(by: training.sequenceLength)
        let total = workers.multipliedReportingOverflow(by: perWorker.partialValue)
        guard workers > 0, !perWorker.overflow, !total.overflow else {
            throw ConfigError(
                file: file, key: "training.micro_batch_size",
                message: "\(workers) workers × micro_batch_size \(training.microBatchSize) × sequence_length "
                    + "\(training.sequenceLength) overflows")
        }
        let tokensPerMicroStep = total.partialValue
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

extension KeyedDecodingContainer {
    /// `RunConfig.faultTolerance` in checkpoints written before the section existed: the defaults. (The
    /// synthesized `Decodable` picks this overload, the most specific one, for that property.)
    public func decode(
        _ type: RunConfig.FaultToleranceSettings.Type, forKey key: Key
    ) throws -> RunConfig.FaultToleranceSettings {
        try decodeIfPresent(type, forKey: key) ?? RunConfig.FaultToleranceSettings()
    }
}

extension RunConfig.DistributedSettings {
    /// `shard_optimizer` and `progress_thread` are missing in checkpoints written before they existed: false, as
    /// they trained. `shared_memory` too: true, its default (it changes how the sharded sums travel, not them).
    public init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            workers: try container.decode(Int.self, forKey: .workers),
            gradientSync: try container.decode(RunConfig.GradientSync.self, forKey: .gradientSync),
            threadsPerWorker: try container.decode(Int.self, forKey: .threadsPerWorker),
            checkReplicasEvery: try container.decode(Int.self, forKey: .checkReplicasEvery),
            shardOptimizer: try container.decodeIfPresent(Bool.self, forKey: .shardOptimizer) ?? false,
            progressThread: try container.decodeIfPresent(Bool.self, forKey: .progressThread) ?? false,
            sharedMemory: try container.decodeIfPresent(Bool.self, forKey: .sharedMemory) ?? true)
    }
}

extension RunConfig.ClassificationSettings {
    /// `echo` missing in checkpoints written before it existed: they read each text once.
    public init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            format: try container.decodeIfPresent(LabeledFileFormat.self, forKey: .format),
            textField: try container.decodeIfPresent(FieldSelector.self, forKey: .textField),
            labelField: try container.decodeIfPresent(FieldSelector.self, forKey: .labelField),
            header: try container.decode(Bool.self, forKey: .header),
            invalidUTF8: try container.decode(InvalidUTF8Handling.self, forKey: .invalidUTF8),
            labels: try container.decodeIfPresent([String].self, forKey: .labels),
            classWeights: try container.decode(RunConfig.ClassWeights.self, forKey: .classWeights),
            freezeBackbone: try container.decode(Bool.self, forKey: .freezeBackbone),
            headLearningRate: try container.decodeIfPresent(Double.self, forKey: .headLearningRate),
            layerDecay: try container.decode(Double.self, forKey: .layerDecay),
            metric: try container.decode(SelectionMetric.self, forKey: .metric),
            patience: try container.decode(Int.self, forKey: .patience),
            calibrate: try container.decode(Bool.self, forKey: .calibrate),
            echo: try container.decodeIfPresent(Bool.self, forKey: .echo) ?? false)
    }
}

extension RunConfig.TrainingSettings {
    /// `dropout` missing in checkpoints written before it existed: they trained without.
    public init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            maxSteps: try container.decode(Int.self, forKey: .maxSteps),
            timeBudgetMinutes: try container.decodeIfPresent(Double.self, forKey: .timeBudgetMinutes),
            sequenceLength: try container.decode(Int.self, forKey: .sequenceLength),
            microBatchSize: try container.decode(Int.self, forKey: .microBatchSize),
            globalBatchTokens: try container.decode(Int.self, forKey: .globalBatchTokens),
            gradClip: try container.decode(Double.self, forKey: .gradClip),
            maxNonFiniteSteps: try container.decode(Int.self, forKey: .maxNonFiniteSteps),
            dropout: try container.decodeIfPresent(Double.self, forKey: .dropout) ?? 0)
    }
}
