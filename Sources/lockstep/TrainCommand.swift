import ArgumentParser
import Foundation
import LockstepKernels
import LockstepTraining

/// `lockstep train --config FILE`: pretraining from a YAML config. With one worker the coordinator and the
/// worker share this process.
struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train", abstract: "Train a GPT model from a YAML config.")

    @Option(help: "The run's YAML config (see configs/).")
    var config: String

    @Option(name: .customLong("set"), help: "Override a config value: --set training.max_steps=100 (repeatable).")
    var overrides: [String] = []

    @Option(help: "Data-parallel workers (overrides distributed.workers).")
    var workers: Int?

    @Option(help: "Resume: 'auto' (the newest valid checkpoint of the run, if any) or a checkpoint directory.")
    var resume: String?

    func run() throws {
        var overrides = overrides
        if let workers { overrides.append("distributed.workers=\(workers)") }
        let runConfig = try RunConfig.load(file: URL(fileURLWithPath: config), overrides: overrides)
        guard runConfig.distributed.workers == 1 else {
            throw ValidationError("distributed.workers = \(runConfig.distributed.workers): several workers need mpirun")
        }
        BLASThreads.set(runConfig.distributed.threadsPerWorker)
        let tokenizer = try RunSetup.tokenizer(runConfig)
        let modelConfig = try RunSetup.modelConfig(runConfig, tokenizer: tokenizer)
        let replica = try RunSetup.replica(runConfig, modelConfig: modelConfig, group: LoneReplica())
        var resumed: CheckpointState? = nil
        if let resume,
            let checkpoint = try RunSetup.checkpointToResume(runConfig, resume: resume, rejected: { warn($0) })
        {
            let snapshot = TrainingSnapshot(count: replica.model.layout.count)
            resumed = try RunSetup.loadCheckpoint(
                checkpoint, config: runConfig, modelConfig: modelConfig,
                tokenizerVocabularySize: tokenizer.vocabularySize, into: snapshot)
            snapshot.restore(into: replica)
            warn("resuming from \(checkpoint.path) at step \(resumed!.step)")
        }
        let stopFlag = StopFlag()
        stopFlag.installSignalHandlers()
        let coordinator = try Coordinator(
            config: runConfig, link: LocalReplicaLink(replica: replica), modelConfig: modelConfig,
            tokenizerVocabularySize: tokenizer.vocabularySize, resumed: resumed, stopFlag: stopFlag,
            console: ProgressReporter(plainLineEvery: runConfig.output.logEvery))
        let summary = try coordinator.run()
        printSummary(summary)
    }
}

func printSummary(_ summary: RunSummary) {
    var line = String(format: "done: %d steps (%@) in %.1f s, loss %.4f", summary.steps, summary.stopReason.rawValue,
        summary.seconds, summary.lastLoss)
    if let validation = summary.lastValidationLoss { line += String(format: ", validation loss %.4f", validation) }
    if summary.skippedSteps > 0 { line += ", \(summary.skippedSteps) skipped non-finite steps" }
    print(line)
    print("model saved to \(summary.modelDirectory.path)")
}

/// A line on standard error, for notes that are not results.
func warn(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}
