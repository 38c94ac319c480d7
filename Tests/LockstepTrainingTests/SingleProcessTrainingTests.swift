import Foundation
import LockstepModel
import LockstepTestSupport
import Testing

@testable import LockstepTraining
import LockstepConfig
import LockstepLogging
import LockstepCheckpoints
import LockstepData

/// End to end in one process: prepare a small corpus at byte level, train a tiny model, reload what it saved.
@Suite("Single-process training")
struct SingleProcessTrainingTests {
    /// A repetitive corpus a tiny model learns quickly (well below the 5.5 nats of a uniform byte guess).
    static func corpus() -> String {
        var text = ""
        var random = TestRandom(seed: 7)
        let words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "hat"]
        for _ in 0..<3000 {
            text += (0..<6).map { _ in words[Int(random.next() % UInt64(words.count))] }.joined(separator: " ")
            text += ".\n"
        }
        return text
    }

    static func prepareCorpus(in directory: URL) throws -> CorpusPreparation.Summary {
        let file = directory.appendingPathComponent("corpus.txt")
        try corpus().write(to: file, atomically: true, encoding: .utf8)
        var preparation = CorpusPreparation(inputs: [file], outputDirectory: directory.appendingPathComponent("data"))
        preparation.shardTokens = 40_000
        preparation.chunkBytes = 4096
        return try preparation.run()
    }

    static func config(directory: URL, extra: String = "") throws -> RunConfig {
        try RunConfig(yaml: """
            model: {context_length: 32, layers: 2, heads: 2, channels: 32, seed: 5}
            data:
              train: \(directory.path)/data/train_*.bin
              validation: \(directory.path)/data/val_*.bin
              shuffle: false
            training: {max_steps: 60, sequence_length: 32, micro_batch_size: 4, global_batch_tokens: 256}
            schedule: {kind: cosine, learning_rate: 3.0e-3, warmup_steps: 5}
            evaluation: {every: 30, max_windows: 32}
            output: {directory: \(directory.path)/run, log_every: 10, tensorboard: false}
            \(extra)
            """, file: "test.yaml")
    }

    @Test func lossFallsAndTheSavedModelReloads() throws {
        let directory = try TemporaryDirectory()
        let summary = try Self.prepareCorpus(in: directory.url)
        #expect(summary.trainShards.count >= 2)
        #expect(summary.validationTokens > 0)
        let config = try Self.config(directory: directory.url)
        let tokenizer = try RunSetup.tokenizer(config)
        let modelConfig = try RunSetup.modelConfig(config, tokenizer: tokenizer)
        let replica = try RunSetup.replica(config, modelConfig: modelConfig, group: LoneReplica())
        let first = try RunSetup.replica(config, modelConfig: modelConfig, group: LoneReplica())
            .trainStep(learningRate: 0).loss
        let result = try Coordinator(
            config: config, link: LocalReplicaLink(replica: replica), modelConfig: modelConfig,
            tokenizer: tokenizer, console: ProgressReporter(output: FileHandle(forWritingAtPath: "/dev/null")!)
        ).run()
        #expect(result.steps == 60)
        #expect(first > 4.5)
        let validation = try #require(result.lastValidationLoss)
        #expect(validation < 2.5, "validation loss \(validation) after 60 steps (started at \(first))")

        // The saved model gives the same validation loss as the run's last evaluation.
        let reloaded = GPT(config: modelConfig, batchSize: 4, sequenceLength: 32)
        try HuggingFaceModel.load(directory: result.modelDirectory, into: reloaded)
        let dataset = try RunSetup.dataset(pattern: config.data.validation!, config: config, modelConfig: modelConfig)
        let sums = ValidationLoss.evaluate(model: reloaded, dataset: dataset, batch: 4, sequenceLength: 32, maxWindows: 32)
        #expect(abs(sums.meanLoss - validation) < 1e-5)

        let lines = try String(contentsOf: directory.url.appendingPathComponent("run/metrics.jsonl"), encoding: .utf8)
            .split(separator: "\n")
        #expect(lines.filter { $0.contains("\"kind\":\"train\"") }.count == 6)
        #expect(lines.filter { $0.contains("\"kind\":\"eval\"") }.count == 2)
    }

    @Test func unshuffledRunsRepeatExactly() throws {
        let directory = try TemporaryDirectory()
        _ = try Self.prepareCorpus(in: directory.url)
        let config = try Self.config(directory: directory.url)
        let tokenizer = try RunSetup.tokenizer(config)
        let modelConfig = try RunSetup.modelConfig(config, tokenizer: tokenizer)
        func losses() throws -> [Double] {
            let replica = try RunSetup.replica(config, modelConfig: modelConfig, group: LoneReplica())
            return try (0..<5).map { _ in try replica.trainStep(learningRate: 1e-3).loss }
        }
        #expect(try losses() == losses())
    }

    /// A checkpoint is refused, with a message saying why, when it does not fit the run.
    @Test func resumeRefusesMismatchedCheckpoints() throws {
        let directory = try TemporaryDirectory()
        _ = try Self.prepareCorpus(in: directory.url)
        let config = try Self.config(directory: directory.url, extra: "checkpoint: {every: 10}")
        let tokenizer = try RunSetup.tokenizer(config)
        let modelConfig = try RunSetup.modelConfig(config, tokenizer: tokenizer)
        let replica = try RunSetup.replica(config, modelConfig: modelConfig, group: LoneReplica())
        _ = try Coordinator(
            config: config, link: LocalReplicaLink(replica: replica), modelConfig: modelConfig,
            tokenizer: tokenizer,
            console: ProgressReporter(output: FileHandle(forWritingAtPath: "/dev/null")!)
        ).run()
        let checkpoint = try #require(
            CheckpointDirectory(root: directory.url.appendingPathComponent("run/checkpoints")).newestValid())
        let snapshot = WorkerState(count: ParameterLayout(config: modelConfig).count)
        let state = try RunSetup.loadCheckpoint(
            checkpoint, config: config, modelConfig: modelConfig, tokenizerVocabularySize: tokenizer.vocabularySize,
            into: snapshot)
        #expect(state.step == 60)

        var wider = modelConfig
        wider.layerCount = 3
        let shape = #expect(throws: CheckpointError.self) {
            try RunSetup.loadCheckpoint(
                checkpoint, config: config, modelConfig: wider, tokenizerVocabularySize: tokenizer.vocabularySize,
                into: WorkerState(count: ParameterLayout(config: wider).count))
        }
        #expect(shape?.description.contains("differs from the config's") == true)

        let vocabulary = #expect(throws: CheckpointError.self) {
            try RunSetup.loadCheckpoint(
                checkpoint, config: config, modelConfig: modelConfig, tokenizerVocabularySize: 1000, into: snapshot)
        }
        #expect(vocabulary?.description.contains("tokenizer") == true)

        // A newer format version (with checksums that hold) is refused, not misread.
        let stateURL = checkpoint.appendingPathComponent("state.json")
        let text = try String(contentsOf: stateURL, encoding: .utf8)
            .replacingOccurrences(of: "\"formatVersion\" : 1", with: "\"formatVersion\" : 99")
        try text.write(to: stateURL, atomically: true, encoding: .utf8)
        let checksumsURL = checkpoint.appendingPathComponent("checksums.json")
        var checksums = try JSONDecoder().decode([String: String].self, from: Data(contentsOf: checksumsURL))
        checksums["state.json"] = try CheckpointDirectory.sha256(of: stateURL)
        try JSONEncoder().encode(checksums).write(to: checksumsURL)
        let newer = #expect(throws: CheckpointError.self) {
            try RunSetup.loadCheckpoint(
                checkpoint, config: config, modelConfig: modelConfig, tokenizerVocabularySize: tokenizer.vocabularySize,
                into: snapshot)
        }
        #expect(newer?.description.contains("newer Lockstep") == true)
    }
}
