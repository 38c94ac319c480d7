import Foundation
import LockstepModel
import LockstepTestSupport
import Testing

@testable import LockstepTraining
import LockstepConfig
import LockstepLogging
import LockstepCheckpoints

/// Resuming, in one process: which checkpoint `--resume auto` takes or refuses, which config changes a resume
/// refuses, the logs after a resume, and `model.init_from` a checkpoint.
@Suite("Resume")
struct ResumeTests {
    static var quiet: ProgressReporter { ProgressReporter(output: FileHandle(forWritingAtPath: "/dev/null")!) }

    /// A 20-step run saving every 5 steps (all kept), logging every step.
    static func config(_ directory: URL, _ extra: String = "") throws -> RunConfig {
        try SingleProcessTrainingTests.config(
            directory: directory,
            extra: """
                checkpoint: {every: 5, keep_last: 10}
                \(extra)
                """
        ).with { config in
            config.training.maxSteps = 20
            config.schedule.totalSteps = 20
            config.output.logEvery = 1
            config.output.tensorboard = true
            config.evaluation.every = 10
        }
    }

    /// Trains `config` in this process, from `resume` (a checkpoint directory or `auto`) when given.
    @discardableResult
    static func train(_ config: RunConfig, resume: String? = nil) throws -> RunSummary {
        let tokenizer = try RunSetup.tokenizer(config)
        let modelConfig = try RunSetup.modelConfig(config, tokenizer: tokenizer)
        let replica = try RunSetup.replica(config, modelConfig: modelConfig, group: LoneReplica())
        var resumed: CheckpointState? = nil
        if let resume, let checkpoint = try RunSetup.checkpointToResume(config, resume: resume, rejected: { _ in }) {
            let snapshot = WorkerState(count: replica.model.layout.count)
            resumed = try RunSetup.loadCheckpoint(
                checkpoint, config: config, modelConfig: modelConfig, tokenizerVocabularySize: tokenizer.vocabularySize,
                into: snapshot)
            replica.restore(from: snapshot)
        }
        return try Coordinator(
            config: config, link: LocalReplicaLink(replica: replica), modelConfig: modelConfig, tokenizer: tokenizer,
            resumed: resumed, console: quiet
        ).run()
    }

    static func checkpoint(_ config: RunConfig, step: Int) -> URL {
        URL(fileURLWithPath: config.output.directory).appendingPathComponent("checkpoints")
            .appendingPathComponent(CheckpointDirectory.name(step: step))
    }

    /// A run stopped after its final checkpoint but before its model export (a kill at that moment) is
    /// finished: resuming it trains nothing and exports the model from that checkpoint, the same bytes as the
    /// run's own export.
    @Test func resumingAFinishedRunWithoutItsModelExportsIt() throws {
        let directory = try TemporaryDirectory()
        _ = try SingleProcessTrainingTests.prepareCorpus(in: directory.url)
        let config = try Self.config(directory.url).with { $0.training.maxSteps = 10; $0.schedule.totalSteps = 10 }
        try Self.train(config)
        let weights = URL(fileURLWithPath: config.output.directory).appendingPathComponent("model/model.safetensors")
        let exported = try Data(contentsOf: weights)
        try FileManager.default.removeItem(at: weights.deletingLastPathComponent())
        let summary = try Self.train(config, resume: "auto")
        #expect(summary.steps == 10)
        #expect(try Data(contentsOf: weights) == exported)
    }

    /// `--resume auto` starts afresh only when there is no checkpoint at all; when every checkpoint is invalid it
    /// stops, listing each and why it was passed over.
    @Test func resumeAutoRefusesWhenNoCheckpointIsValid() throws {
        let directory = try TemporaryDirectory()
        _ = try SingleProcessTrainingTests.prepareCorpus(in: directory.url)
        let config = try Self.config(directory.url, "").with { $0.training.maxSteps = 10; $0.schedule.totalSteps = 10 }
        #expect(try RunSetup.checkpointToResume(config, resume: "auto", rejected: { _ in }) == nil)
        try Self.train(config)
        let fifth = Self.checkpoint(config, step: 5), tenth = Self.checkpoint(config, step: 10)
        // Step 10: a bit flip. Step 5: checksums.json no longer lists optimizer.safetensors.
        let model = tenth.appendingPathComponent("model.safetensors")
        var bytes = try Data(contentsOf: model)
        bytes[bytes.count - 3] ^= 0x01
        try bytes.write(to: model)
        let checksumsURL = fifth.appendingPathComponent("checksums.json")
        var checksums = try JSONDecoder().decode([String: String].self, from: Data(contentsOf: checksumsURL))
        checksums["optimizer.safetensors"] = nil
        try JSONEncoder().encode(checksums).write(to: checksumsURL)

        var heard: [String] = []
        let error = #expect(throws: CheckpointError.self) {
            try RunSetup.checkpointToResume(config, resume: "auto", rejected: { heard.append($0) })
        }
        let message = error?.description ?? ""
        #expect(message.contains("none is valid"))
        #expect(message.contains(model.path + ": checksum mismatch"))
        #expect(message.contains(checksumsURL.path + ": does not list optimizer.safetensors"))
        #expect(heard.count == 2)
        // Nothing was started over: both checkpoints are still there.
        #expect(FileManager.default.fileExists(atPath: fifth.path) && FileManager.default.fileExists(atPath: tenth.path))
    }

    /// A resume whose data settings or schedule length differ from the checkpoint's run is refused, naming the
    /// key; `fault_tolerance.allow_resume_changes` lets it through on purpose.
    @Test func resumeRefusesChangedDataOrScheduleUnlessAllowed() throws {
        let directory = try TemporaryDirectory()
        _ = try SingleProcessTrainingTests.prepareCorpus(in: directory.url)
        let config = try Self.config(directory.url).with { $0.training.maxSteps = 5; $0.schedule.totalSteps = 5 }
        try Self.train(config)
        let checkpoint = Self.checkpoint(config, step: 5)
        let tokenizer = try RunSetup.tokenizer(config)
        let modelConfig = try RunSetup.modelConfig(config, tokenizer: tokenizer)
        func load(_ changed: RunConfig) throws -> CheckpointState {
            try RunSetup.loadCheckpoint(
                checkpoint, config: changed, modelConfig: modelConfig, tokenizerVocabularySize: tokenizer.vocabularySize,
                into: WorkerState(count: ParameterLayout(config: modelConfig).count))
        }
        #expect(try load(config).step == 5)
        let cases: [(key: String, change: (inout RunConfig) -> Void)] = [
            ("training.max_steps", { $0.training.maxSteps = 40; $0.schedule.totalSteps = 40 }),
            ("data.seed", { $0.data.seed = 77 }),
            ("data.shuffle", { $0.data.shuffle = true }),
            ("data.train", { $0.data.train = directory.url.path + "/data/train_000001.bin" }),
            ("schedule.kind", { $0.schedule.kind = .linear }),
            ("optimizer.kind", { $0.optimizer.kind = .muon }),
        ]
        for (key, change) in cases {
            var changed = config
            change(&changed)
            let error = #expect(throws: CheckpointError.self, "\(key)") { try load(changed) }
            #expect(error?.description.contains("\(key) was ") == true, "\(error?.description ?? "")")
            #expect(error?.description.contains("fault_tolerance.allow_resume_changes: [\(key)]") == true)
            changed.faultTolerance.allowResumeChanges = [key]
            #expect(try load(changed).step == 5, "\(key) allowed")
        }
        // The override itself is read from YAML and checked.
        let allowed = try RunConfig(
            yaml: "data: {train: x}\nfault_tolerance: {allow_resume_changes: [training.max_steps, data.seed]}",
            file: "a.yaml")
        #expect(allowed.faultTolerance.allowResumeChanges == ["training.max_steps", "data.seed"])
        let unknown = #expect(throws: ConfigError.self) {
            try RunConfig(yaml: "data: {train: x}\nfault_tolerance: {allow_resume_changes: [model.layers]}", file: "a.yaml")
        }
        #expect(unknown?.description.contains("fault_tolerance.allow_resume_changes") == true)
    }

    /// After a resume from a step before the last logged one, metrics.jsonl holds each step once, and the
    /// resumed run's records are those of an uninterrupted run; TensorBoard gets its restart marker.
    @Test func metricsHoldEachStepOnceAfterAResume() throws {
        let directory = try TemporaryDirectory()
        _ = try SingleProcessTrainingTests.prepareCorpus(in: directory.url)
        let config = try Self.config(directory.url)
        try Self.train(config)
        let metricsURL = URL(fileURLWithPath: config.output.directory).appendingPathComponent("metrics.jsonl")
        let uninterrupted = try MetricsLog.read(url: metricsURL)
        func trainSteps(_ records: [[String: MetricValue]]) -> [Int] {
            records.filter { $0["kind"] == .string("train") }.compactMap { if case .int(let s) = $0["step"] { s } else { nil } }
        }
        #expect(trainSteps(uninterrupted) == Array(1...20))

        // Resume at step 10 though steps 11...20 were logged (as after a crash late in the run).
        try Self.train(config, resume: Self.checkpoint(config, step: 10).path)
        let resumed = try MetricsLog.read(url: metricsURL)
        #expect(trainSteps(resumed) == Array(1...20))
        #expect(resumed.filter { $0["kind"] == .string("eval") }.count == 2)
        func losses(_ records: [[String: MetricValue]]) -> [Double] {
            records.filter { $0["kind"] == .string("train") }.compactMap { $0["loss"]?.doubleValue }
        }
        #expect(losses(resumed) == losses(uninterrupted))

        // The resumed run's event file starts with TensorBoard's restart marker at step 11:
        // Event { step: 11, session_log { status: START } }.
        let events = URL(fileURLWithPath: config.output.directory).appendingPathComponent("tensorboard")
        let files = try FileManager.default.contentsOfDirectory(atPath: events.path).sorted()
        #expect(files.count == 2)
        let newest = try files.map { events.appendingPathComponent($0) }.max {
            try $0.resourceValues(forKeys: [.creationDateKey]).creationDate ?? .distantPast
                < $1.resourceValues(forKeys: [.creationDateKey]).creationDate ?? .distantPast
        }
        var marked = 0
        for file in files {
            let bytes = [UInt8](try Data(contentsOf: events.appendingPathComponent(file)))
            let marker: [UInt8] = [0x10, 11, 0x32, 0x02, 0x08, 0x01]
            if bytes.count >= marker.count, (0...(bytes.count - marker.count)).contains(where: { Array(bytes[$0..<$0 + marker.count]) == marker }) {
                marked += 1
                #expect(events.appendingPathComponent(file).path == newest?.path)
            }
        }
        #expect(marked == 1)
    }

    /// `model.init_from` a checkpoint verifies its checksums (and required files) as a resume does.
    @Test func initFromACheckpointVerifiesIt() throws {
        let directory = try TemporaryDirectory()
        _ = try SingleProcessTrainingTests.prepareCorpus(in: directory.url)
        let config = try Self.config(directory.url).with { $0.training.maxSteps = 5; $0.schedule.totalSteps = 5 }
        try Self.train(config)
        let checkpoint = Self.checkpoint(config, step: 5)
        var fineTune = config
        fineTune.model.initFrom = checkpoint.path
        fineTune.output.directory = directory.url.appendingPathComponent("second").path
        let tokenizer = try RunSetup.tokenizer(fineTune)
        let modelConfig = try RunSetup.modelConfig(fineTune, tokenizer: tokenizer)
        _ = try RunSetup.model(fineTune, modelConfig: modelConfig)

        let weights = checkpoint.appendingPathComponent("model.safetensors")
        var bytes = try Data(contentsOf: weights)
        bytes[bytes.count - 1] ^= 0x40
        try bytes.write(to: weights)
        let corrupt = #expect(throws: ConfigError.self) { try RunSetup.modelConfig(fineTune, tokenizer: tokenizer) }
        #expect(corrupt?.key == "model.init_from")
        #expect(corrupt?.description.contains("model.safetensors: checksum mismatch") == true)
        let weightsOnly = #expect(throws: ConfigError.self) { try RunSetup.model(fineTune, modelConfig: modelConfig) }
        #expect(weightsOnly?.description.contains("checksum mismatch") == true)

        // A model shape that is not the checkpoint's is refused too.
        bytes[bytes.count - 1] ^= 0x40
        try bytes.write(to: weights)
        var other = modelConfig
        other.channels = 64
        let shape = #expect(throws: ConfigError.self) { try RunSetup.model(fineTune, modelConfig: other) }
        #expect(shape?.description.contains("differs from this run's") == true)
    }
}

extension RunConfig {
    /// This config with `change` applied.
    func with(_ change: (inout RunConfig) -> Void) -> RunConfig {
        var copy = self
        change(&copy)
        return copy
    }
}
