import Foundation
import LockstepData
import LockstepFormats
import LockstepModel
import LockstepTokenizer
import LockstepConfig
import LockstepCheckpoints
import LockstepEvaluation
import LockstepOptimizer
import LockstepDistributed

/// Turns a `RunConfig` into the objects a run needs. Shared by every role so that the coordinator and the
/// workers derive the same model shape and data order from the same config.
public enum RunSetup {
    /// The run's tokenizer (`data.tokenizer`): see `ModelExport.tokenizer(for:)`.
    public static func tokenizer(_ config: RunConfig) throws -> BPETokenizer {
        try ModelExport.tokenizer(for: config)
    }

    /// `url` as a Lockstep checkpoint: see `ModelLocation.checkpoint(_:)`.
    public static func checkpointDirectory(_ url: URL) -> URL? {
        ModelLocation.checkpoint(url)
    }

    /// `model.init_from` as a Lockstep checkpoint whose checksums hold (as a resume checks them); nil when it is
    /// not a checkpoint (a Hugging Face directory).
    /// - Throws: `ConfigError` on `model.init_from` naming the checkpoint and what failed.
    static func verifiedInitCheckpoint(_ path: String) throws -> URL? {
        guard let checkpoint = checkpointDirectory(URL(fileURLWithPath: path)) else { return nil }
        do {
            try CheckpointDirectory.verify(checkpoint)
        } catch {
            throw ConfigError(file: path, key: "model.init_from", message: "not a valid checkpoint: \(error)")
        }
        return checkpoint
    }

    /// The architecture: from `model.init_from` (a checkpoint's state.json or a Hugging Face config.json) when
    /// given, else from the `model` section with the tokenizer's vocabulary size unless `model.vocab_size`
    /// says otherwise. A classifier gets K = the number of labels and the tokenizer's pad id.
    /// - Parameter checkingMemory: refuse a model whose worker would not fit in this machine's memory (`checkMemory`).
    public static func modelConfig(
        _ config: RunConfig, tokenizer: some Tokenizer, checkingMemory: Bool = true
    ) throws -> GPTConfig {
        var modelConfig: GPTConfig
        if let path = config.model.initFrom {
            let url = URL(fileURLWithPath: path)
            modelConfig = try verifiedInitCheckpoint(path).map { try TrainingCheckpoint.readState($0).model }
                ?? HuggingFaceModel.loadConfig(directory: url)
            if modelConfig.contextLength < config.training.sequenceLength {
                throw ConfigError(
                    file: path, key: "training.sequence_length",
                    message: "\(config.training.sequenceLength) exceeds the model's context length \(modelConfig.contextLength)")
            }
            if modelConfig.vocabularySize < tokenizer.vocabularySize {
                throw ConfigError(
                    file: path, key: "data.tokenizer",
                    message: "the tokenizer has \(tokenizer.vocabularySize) entries, more than the model's vocabulary (\(modelConfig.vocabularySize))")
            }
        } else {
            let vocabularySize = config.model.vocabularySize ?? tokenizer.vocabularySize
            if vocabularySize < tokenizer.vocabularySize {
                throw ConfigError(
                    file: "<config>", key: "model.vocab_size",
                    message: "\(vocabularySize) is smaller than the tokenizer's vocabulary (\(tokenizer.vocabularySize))")
            }
            modelConfig = config.model.gptConfig(vocabularySize: vocabularySize)
            if let problem = modelConfig.problems.first {
                throw ConfigError(file: "<config>", key: "model", message: problem)
            }
        }
        if config.task == .classification {
            modelConfig.labelCount = try config.labelMap().names.count
            modelConfig.padTokenID = tokenizer.padID
        }
        if checkingMemory { try checkMemory(config, modelConfig: modelConfig) }
        return modelConfig
    }

    /// Roughly how much memory a run needs, from its shapes (in bytes; Floats are 4):
    /// - each worker: parameters and gradients (2·P), AdamW's two moments (2·P, or its 2·P / W share with
    ///   `distributed.shard_optimizer`), with Muon its packed updates (P at most), and the activations of one micro-batch (per block about 18·C + 2·H·T
    ///   floats per token, logits and probabilities 2·V per token);
    /// - the coordinator: its copy of the parameters and moments for checkpoints (3·P).
    /// Nil when the arithmetic overflows Int (far beyond any memory). docs/BENCHMARKS.md compares it with the
    /// `peak_rss_bytes` that runs measure.
    public static func memoryEstimate(_ config: RunConfig, modelConfig m: GPTConfig) -> MemoryEstimate? {
        func product(_ factors: Int...) -> Int? {
            var result = 1
            for factor in factors {
                let (value, overflow) = result.multipliedReportingOverflow(by: factor)
                if overflow { return nil }
                result = value
            }
            return result
        }
        func sum(_ terms: Int?...) -> Int? {
            var result = 0
            for term in terms {
                guard let term else { return nil }
                let (value, overflow) = result.addingReportingOverflow(term)
                if overflow { return nil }
                result = value
            }
            return result
        }
        let C = m.channels, L = m.layerCount, V = m.vocabularySize, T = config.training.sequenceLength
        let workers = max(1, config.distributed.workers)
        // Widths of a block's q/k/v projection, MLP input (2I when gated) and MLP hidden state.
        let I = m.mlpWidth
        let qkvWidth = sum(m.headCount, product(2, m.keyValueHeads)).flatMap { product($0, m.headSize) }
        let fcWidth = m.family == .llama ? product(2, I) : I
        guard let qkvWidth, let fcWidth, let widths = sum(qkvWidth, C, fcWidth, I) else { return nil }
        let perBlock = sum(product(C, widths), qkvWidth, fcWidth, product(6, C))
        let headTable = m.tiesHead || m.labelCount != nil ? 0 : product(V, C)
        let parameters = sum(
            product(V, C), m.family == .gpt2 ? product(m.contextLength, C) : 0, perBlock.flatMap { product(L, $0) },
            product(2, C), headTable, product(m.labelCount ?? 0, C))
        let tokens = product(config.training.microBatchSize, T)
        let perTokenBlock = sum(product(7, C), qkvWidth, fcWidth, I, product(2, m.headCount, T))
        let perToken = sum(perTokenBlock.flatMap { product(L, $0) }, product(2, V), product(4, C))
        guard let parameters, let tokens, let perToken, let activations = product(tokens, perToken),
            let moments = product(2, config.distributed.shardOptimizer ? (parameters + workers - 1) / workers : parameters),
            // Muon's packed buffer of orthogonalised updates: at most one Float per parameter.
            let perWorker = sum(
                product(4, 2, parameters), product(4, moments), product(4, activations),
                config.optimizer.kind == .muon ? product(4, parameters) : 0),
            let coordinator = product(4, 3, parameters)
        else { return nil }
        return MemoryEstimate(perWorker: perWorker, coordinator: coordinator)
    }

    /// Physical memory of this machine in bytes (sysconf), nil where it cannot be told.
    public static var physicalMemory: Int? {
        let pages = sysconf(Int32(_SC_PHYS_PAGES)), size = sysconf(Int32(_SC_PAGESIZE))
        guard pages > 0, size > 0 else { return nil }
        return pages.multipliedReportingOverflow(by: size).overflow ? nil : pages * size
    }

    /// Refuses, before anything is allocated, a run whose coordinator and `processes` workers would not fit in
    /// this machine's memory.
    /// - Returns: the estimate, for the launch message; nil where this machine's memory cannot be told.
    @discardableResult
    public static func checkMemory(_ config: RunConfig, modelConfig: GPTConfig, processes: Int = 1) throws -> MemoryEstimate? {
        guard let memory = physicalMemory else { return nil }
        let shape = "\(modelConfig.layerCount) layers × \(modelConfig.channels) channels, vocabulary "
            + "\(modelConfig.vocabularySize), context \(modelConfig.contextLength), micro-batch "
            + "\(config.training.microBatchSize) × \(config.training.sequenceLength) tokens"
        guard let estimate = memoryEstimate(config, modelConfig: modelConfig), let total = estimate.total(workers: processes)
        else {
            throw ConfigError(
                file: "<config>", key: "model",
                message: "the model (\(shape)) is too large to count: its memory estimate overflows; this machine has \(MemoryEstimate.gib(memory))")
        }
        if total > memory {
            throw ConfigError(
                file: "<config>", key: "model",
                message: "the model (\(shape)) needs \(estimate.describe(workers: processes)) (parameters, gradients, "
                    + "two AdamW moments and activations), more than this machine's \(MemoryEstimate.gib(memory)) of "
                    + "memory; make model.layers/channels/context_length or training.micro_batch_size smaller"
                    + (config.distributed.shardOptimizer || processes < 2 ? "" : ", or set distributed.shard_optimizer: true"))
        }
        return estimate
    }

    /// A replica's model with its starting weights: `init_from`'s, or fresh ones from `model.seed`.
    /// Every replica that calls this with the same config gets the same parameters. A classifier started from
    /// a language model gets a fresh head from `model.seed`.
    /// - Parameter shared: parameters and gradients in memory the workers of one host share; every worker then
    ///   writes the same starting weights into the one copy (synchronise before reading them).
    public static func model(_ config: RunConfig, modelConfig: GPTConfig, shared: SharedTrainingMemory? = nil) throws -> GPT {
        let model = GPT(
            config: modelConfig, batchSize: config.training.microBatchSize,
            sequenceLength: config.training.sequenceLength,
            storage: shared.map { ($0.parameters, $0.gradients[$0.rank]) })
        guard let path = config.model.initFrom else {
            model.initializeRandomly(seed: config.model.seed)
            return model
        }
        if modelConfig.labelCount != nil { model.initializeHead(seed: config.model.seed) }
        let directory = URL(fileURLWithPath: path)
        let checkpoint = try verifiedInitCheckpoint(path)
        if let checkpoint {
            // The shape the checkpoint was trained with must be this model's (a classifier adds its own head).
            let stored = try TrainingCheckpoint.readState(checkpoint).model
            var backbone = modelConfig
            backbone.labelCount = stored.labelCount
            backbone.padTokenID = stored.padTokenID
            if stored != backbone {
                throw ConfigError(
                    file: path, key: "model.init_from",
                    message: "the checkpoint's model (\(TrainingCheckpoint.describe(stored))) differs from this run's (\(TrainingCheckpoint.describe(modelConfig)))")
            }
        }
        let weights = (checkpoint ?? directory).appendingPathComponent(HuggingFaceModel.weightsFile)
        try HuggingFaceModel.loadParameters(
            from: SafeTensorsFile.read(weights), into: model.parameters, layout: model.layout,
            requireScore: config.task != .classification)
        return model
    }

    public static func dataset(pattern: String, config: RunConfig, modelConfig: GPTConfig) throws -> TokenWindowDataset {
        try TokenWindowDataset(
            files: try TokenWindowDataset.files(matching: pattern), format: config.data.format,
            sequenceLength: config.training.sequenceLength, vocabularySize: modelConfig.vocabularySize)
    }

    /// A replica with a fresh model (see `model(_:modelConfig:)`).
    public static func replica(_ config: RunConfig, modelConfig: GPTConfig, group: ReplicaGroup) throws -> WorkerReplica {
        try replica(config, model: model(config, modelConfig: modelConfig), group: group)
    }

    /// Replica `group.replicaIndex` of `group.replicaCount`: `model`, its slice of the training stream, the
    /// validation set, and an optimizer with the task's per-tensor learning rates (over the group's
    /// `gradientShard` when the optimizer state is sharded).
    public static func replica(_ config: RunConfig, model: GPT, group: ReplicaGroup) throws -> WorkerReplica {
        let task: ReplicaTask
        switch config.task {
        case .languageModel:
            let modelConfig = model.config
            let train = try dataset(pattern: config.data.train, config: config, modelConfig: modelConfig)
            let validation = try config.data.validation.map {
                try dataset(pattern: $0, config: config, modelConfig: modelConfig)
            }
            let stream = try PretrainingStream(
                dataset: train, globalBatchWindows: config.globalBatchWindows, seed: config.data.seed,
                shuffle: config.data.shuffle, rank: group.replicaIndex, worldSize: group.replicaCount)
            task = LanguageModelTask(
                model: model, stream: stream, validation: validation, maxValidationWindows: config.evaluation.maxWindows,
                dropout: TrainingDropout(config, replicaIndex: group.replicaIndex))
        case .classification:
            task = try classificationTask(config, model: model, group: group)
        }
        let scale = learningRateScale(config, layout: model.layout)
        let optimizer: any Optimizer
        switch config.optimizer.kind {
        case .adamw:
            optimizer = AdamWOptimizer(layout: model.layout, shard: group.gradientShard?.range, learningRateScale: scale)
        case .muon:
            // The config refuses distributed.shard_optimizer with Muon, so the group holds whole gradient sums.
            optimizer = MuonOptimizer(
                layout: model.layout, settings: muonSettings(config), exchange: group, learningRateScale: scale)
        }
        return try WorkerReplica(config: config, model: model, optimizer: optimizer, task: task, group: group)
    }
}

extension RunSetup {
    /// Muon's settings from `optimizer.muon_*`, `optimizer.weight_decay` and the schedule's peak.
    static func muonSettings(_ config: RunConfig) -> MuonSettings {
        MuonSettings(
            learningRate: config.optimizer.muonLearningRate, scheduleLearningRate: config.schedule.peak,
            momentum: config.optimizer.muonMomentum, weightDecay: config.optimizer.weightDecay)
    }

    /// The checkpoint to resume from: `auto` means the newest valid one under the run's output directory (nil
    /// when there is no checkpoint at all: a fresh start), anything else is a checkpoint directory that must be
    /// valid. `rejected` hears of each checkpoint passed over.
    /// - Throws: `CheckpointError` when `auto` finds checkpoints but none valid, listing why each was passed
    ///   over (starting afresh would silently throw the run's progress away).
    public static func checkpointToResume(
        _ config: RunConfig, resume: String, rejected: (String) -> Void
    ) throws -> URL? {
        if resume == "auto" {
            let directory = CheckpointDirectory(
                root: URL(fileURLWithPath: config.output.directory).appendingPathComponent("checkpoints"))
            var reasons: [String] = []
            if let newest = directory.newestValid(rejected: { reason in
                reasons.append(reason)
                rejected(reason)
            }) {
                return newest
            }
            if reasons.isEmpty { return nil }
            throw CheckpointError(
                description: """
                    \(directory.root.path): --resume auto found \(reasons.count) checkpoint(s) and none is valid; \
                    refusing to start afresh over them. Move them away to start afresh, or repair one:
                    """ + reasons.map { "\n  - " + $0 }.joined())
        }
        let url = URL(fileURLWithPath: resume)
        try CheckpointDirectory.verify(url)
        return url
    }

    /// Loads `checkpoint` into `snapshot` after checking it fits this run: same model shape, same tokenizer
    /// vocabulary size, same global batch (so that the data cursor means the same windows).
    public static func loadCheckpoint(
        _ checkpoint: URL, config: RunConfig, modelConfig: GPTConfig, tokenizerVocabularySize: Int,
        into snapshot: WorkerState
    ) throws -> CheckpointState {
        let state = try TrainingCheckpoint.load(checkpoint, expectedModel: modelConfig, into: snapshot)
        if state.tokenizerVocabularySize != tokenizerVocabularySize {
            throw CheckpointError(
                description: """
                    \(checkpoint.path): trained with a tokenizer of \(state.tokenizerVocabularySize) entries; \
                    data.tokenizer has \(tokenizerVocabularySize)
                    """)
        }
        try checkResumeChanges(checkpoint, state: state, config: config)
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

    /// Refuses to continue `state` (the checkpoint at `checkpoint`) under `config` when a setting that decides
    /// the data stream or the schedule's length differs (`FaultToleranceSettings.resumeCheckedKeys`), unless
    /// `fault_tolerance.allow_resume_changes` lists its key.
    /// - Throws: `CheckpointError` naming the checkpoint, the key, both values and the override.
    static func checkResumeChanges(_ checkpoint: URL, state: CheckpointState, config: RunConfig) throws {
        let stored = state.config
        let labels: [String]? = config.task == .classification ? try config.labelMap().names : nil
        func text(_ value: Any?) -> String {
            guard let value else { return "none" }
            if let list = value as? [String] { return "[" + list.joined(separator: ", ") + "]" }
            return "\(value)"
        }
        let compared: [(key: String, checkpoint: String, run: String)] = [
            ("data.train", stored.data.train, config.data.train),
            ("data.validation", text(stored.data.validation), text(config.data.validation)),
            ("data.format", stored.data.format.rawValue, config.data.format.rawValue),
            ("data.seed", text(stored.data.seed), text(config.data.seed)),
            ("data.shuffle", text(stored.data.shuffle), text(config.data.shuffle)),
            ("classification.labels", text(state.labelNames), text(labels)),
            ("training.max_steps", text(stored.training.maxSteps), text(config.training.maxSteps)),
            ("schedule.kind", stored.schedule.kind.rawValue, config.schedule.kind.rawValue),
            ("optimizer.kind", stored.optimizer.kind.rawValue, config.optimizer.kind.rawValue),
        ]
        let allowed = Set(config.faultTolerance.allowResumeChanges)
        for change in compared where change.checkpoint != change.run && !allowed.contains(change.key) {
            throw CheckpointError(
                description: """
                    \(checkpoint.path): \(change.key) was \(change.checkpoint) in this checkpoint's run and is \
                    \(change.run) now; resuming would not continue the same run. To change it on purpose, set \
                    fault_tolerance.allow_resume_changes: [\(change.key)]
                    """)
        }
    }
}

/// What `RunSetup.memoryEstimate` says a run needs, in bytes.
public struct MemoryEstimate: Equatable, Sendable {
    /// One worker: parameters, gradients, its AdamW moments and one micro-batch's activations.
    public var perWorker: Int
    /// The coordinator's copy of the parameters and moments for checkpoints.
    public var coordinator: Int

    /// The coordinator and `workers` workers on one machine (a one-worker run holds both in one process);
    /// nil on overflow.
    public func total(workers: Int) -> Int? {
        let (all, overflow) = perWorker.multipliedReportingOverflow(by: max(1, workers))
        if overflow { return nil }
        let (total, overflowAgain) = all.addingReportingOverflow(coordinator)
        return overflowAgain ? nil : total
    }

    /// `about 1.9 GiB per worker × 2 workers + 1.4 GiB for the coordinator = 5.2 GiB`.
    public func describe(workers: Int) -> String {
        let total = self.total(workers: workers).map(Self.gib) ?? "more than Int can count"
        let count = max(1, workers)
        return "about \(Self.gib(perWorker)) per worker × \(count) worker\(count == 1 ? "" : "s") + "
            + "\(Self.gib(coordinator)) for the coordinator = \(total)"
    }

    static func gib(_ bytes: Int) -> String { String(format: "%.1f GiB", Double(bytes) / Double(1 << 30)) }
}
