import Foundation
import LockstepModel
import LockstepTestSupport
import Testing

@testable import LockstepTraining
import LockstepCheckpoints
import LockstepLogging

/// The Llama family from the command line: `lockstep train` with 2 workers under mpirun, an exact resume,
/// `generate` and `evaluate` on its model, and fine-tuning a classifier from its checkpoint.
@Suite("Llama from the command line", .serialized)
struct LlamaTrainingTests {
    static let llamaKeys = [
        "--set", "model.family=llama", "--set", "model.heads=4", "--set", "model.kv_heads=2",
        "--set", "model.intermediate_size=64",
    ]

    @Test func twoWorkersTrainResumeExactlyGenerateAndEvaluate() throws {
        let temporary = try TemporaryDirectory()
        let directory = temporary.url
        _ = try DistributedTrainingTests.setUp(directory)

        let full = try DistributedTrainingTests.train(directory, workers: 2, output: "runs/full", extra: Self.llamaKeys)
        #expect(full.output.contains("validation loss"))
        let records = try MetricsLog.read(url: directory.appendingPathComponent("runs/full/metrics.jsonl"))
        let firstLoss = try #require(records.first?["loss"]?.doubleValue)
        let lastLoss = try DistributedTrainingTests.lastTrainLoss(directory, "runs/full")
        #expect(lastLoss < firstLoss - 0.5, "loss \(firstLoss) -> \(lastLoss)")
        let model = directory.appendingPathComponent("runs/full/model")
        let config = try HuggingFaceModel.loadConfig(directory: model)
        #expect(config.family == .llama && config.keyValueHeads == 2 && config.mlpWidth == 64 && !config.tiesHead)

        // Interrupted at step 25 and resumed with 2 workers: the same final model, byte for byte.
        let checkpointRoot = directory.appendingPathComponent("runs/resumed/checkpoints")
        try FileManager.default.createDirectory(at: checkpointRoot, withIntermediateDirectories: true)
        try FileManager.default.copyItem(
            at: directory.appendingPathComponent("runs/full/checkpoints/step-0000025"),
            to: checkpointRoot.appendingPathComponent("step-0000025"))
        _ = try DistributedTrainingTests.train(
            directory, workers: 2, output: "runs/resumed", extra: Self.llamaKeys + ["--resume", "auto"])
        #expect(
            try DistributedTrainingTests.finalModel(directory, "runs/resumed")
                == DistributedTrainingTests.finalModel(directory, "runs/full"))

        // Generation over the KV cache with rotary positions, greedy, so it is deterministic.
        let generated = try MPIRun.command(
            [DistributedTrainingTests.lockstep, "generate", "--model", model.path, "--prompt", "The ", "--max-tokens",
             "20", "--temperature", "0"], directory: directory, timeout: 120)
        #expect(generated.status == 0, "\(generated.output)")
        #expect(generated.output.hasPrefix("The "), "\(generated.output)")
        let again = try MPIRun.command(
            [DistributedTrainingTests.lockstep, "generate", "--model", model.path, "--prompt", "The ", "--max-tokens",
             "20", "--temperature", "0"], directory: directory, timeout: 120)
        #expect(again.output == generated.output)

        // Evaluation of the saved model on the validation shards gives a finite loss near the run's own.
        let evaluated = try MPIRun.command(
            [DistributedTrainingTests.lockstep, "evaluate", "--model", model.path, "--data", "data/val_*.bin",
             "--sequence-length", "32"], directory: directory, timeout: 120)
        #expect(evaluated.status == 0, "\(evaluated.output)")
        #expect(evaluated.output.contains("loss"), "\(evaluated.output)")
    }

    /// A classifier fine-tuned from a Llama checkpoint (`init_from`) keeps the Llama body and learns the labels.
    @Test func fineTunesAClassifierFromALlamaCheckpoint() throws {
        let temporary = try TemporaryDirectory()
        let directory = temporary.url
        _ = try DistributedTrainingTests.setUp(directory)
        _ = try DistributedTrainingTests.train(
            directory, workers: 1, output: "runs/lm",
            extra: Self.llamaKeys + ["--set", "training.max_steps=10", "--set", "checkpoint.every=0"])
        try FineTuningTests.setUp(directory)
        let config = try FineTuningTests.config(
            directory, ["model.init_from=DIR/runs/lm/checkpoints", "training.max_steps=60"])
        let summary = try FineTuningTests.train(config)
        let modelConfig = try HuggingFaceModel.loadConfig(directory: directory.appendingPathComponent("runs/ft/model"))
        #expect(modelConfig.family == .llama && modelConfig.labelCount == 2)
        let accuracy = try #require(summary.best?.bestValue)
        #expect(accuracy > 0.8, "dev accuracy \(accuracy)")
    }
}
