import Foundation
import LockstepDistributed
import LockstepFormats
import LockstepModel
import LockstepTokenizer

/// Why a run ended.
public enum StopReason: String, Codable, Sendable {
    case stepBudget = "step budget"
    case timeBudget = "time budget"
    case signal = "signal"
    /// Fine-tuning: `classification.patience` evaluations in a row without a better dev metric.
    case earlyStopping = "early stopping"
}

/// The end of a run, as the CLI reports it.
public struct RunSummary: Sendable {
    public var steps: Int
    public var stopReason: StopReason
    public var lastLoss: Double
    public var lastValidationLoss: Double?
    public var skippedSteps: Int
    public var seconds: Double
    /// From the first step's start to the last step's end (final save and model export not included), and
    /// this process's CPU time over the same span: the coordinator's steady-state cost.
    public var steppingSeconds: Double
    public var steppingCPUSeconds: Double
    public var modelDirectory: URL
    /// Fine-tuning with a dev set: the best evaluation, whose parameters `modelDirectory` holds.
    public var best: ModelSelection?

    /// One line for the console.
    public var line: String {
        var line = String(
            format: "done: %d steps (%@) in %.1f s, loss %.4f", steps, stopReason.rawValue, seconds, lastLoss)
        if let validation = lastValidationLoss { line += String(format: ", validation loss %.4f", validation) }
        if let best, let step = best.bestStep, let value = best.bestValue {
            line += String(format: ", best dev %@ %.4f at step %d", best.metric.rawValue, value, step)
        }
        if skippedSteps > 0 { line += ", \(skippedSteps) skipped non-finite steps" }
        return line
    }
}

/// Errors that end a run on the coordinator's decision.
public struct TrainingStopped: Error, CustomStringConvertible {
    public var description: String
}

/// The coordinator role: owns the learning-rate schedule, evaluation and checkpoint cadence, logging, the
/// decision to stop, and the saved files. It never touches data or gradients; it orders steps from a
/// `ReplicaLink` and writes checkpoints in the background while the replicas go on.
///
/// `@unchecked Sendable`: the save queue reads the snapshot and sets `saveError` only between
/// `saveInBackground` and the next `waitForSave`, during which the main thread touches neither.
public final class Coordinator: @unchecked Sendable {
    let config: RunConfig
    let link: ReplicaLink
    let modelConfig: GPTConfig
    let layout: ParameterLayout
    let schedule: LearningRateSchedule
    let outputDirectory: URL
    let checkpoints: CheckpointDirectory
    let console: ProgressReporter
    let stopFlag: StopFlag
    let tokenizer: BPETokenizer
    /// Classifier runs: label names in id order.
    let labelNames: [String]?
    /// Classifier runs with a dev set: metrics, temperature, best checkpoint and patience.
    let judge: DevSetJudge?
    /// The checkpoint this run continues from, if any.
    let resumed: CheckpointState?
    let snapshot: TrainingSnapshot
    let saveQueue = DispatchQueue(label: "lockstep.checkpoint-writer")
    private var saveError: Error?

    /// `resumed`: the state of the checkpoint whose contents the replicas were started from.
    public init(
        config: RunConfig, link: ReplicaLink, modelConfig: GPTConfig, tokenizer: BPETokenizer,
        resumed: CheckpointState? = nil, stopFlag: StopFlag = StopFlag(), console: ProgressReporter = ProgressReporter()
    ) throws {
        self.config = config
        self.link = link
        self.modelConfig = modelConfig
        self.layout = ParameterLayout(config: modelConfig)
        self.schedule = config.schedule
        self.outputDirectory = URL(fileURLWithPath: config.output.directory)
        self.checkpoints = CheckpointDirectory(root: outputDirectory.appendingPathComponent("checkpoints"))
        self.console = console
        self.stopFlag = stopFlag
        self.tokenizer = tokenizer
        self.resumed = resumed
        self.snapshot = TrainingSnapshot(count: layout.count)
        if config.task == .classification {
            let names = try RunSetup.labels(config).names
            labelNames = names
            judge = config.data.validation == nil
                ? nil : try DevSetJudge(config: config, labelNames: names, resumed: resumed)
        } else {
            labelNames = nil
            judge = nil
        }
    }

    /// Classifier runs with a dev set: its size and K, which an MPI link needs to collect the dev logits.
    public var classifierDevSet: (examples: Int, classes: Int)? {
        judge.map { ($0.labels.count, $0.labelNames.count) }
    }

    public func run() throws -> RunSummary {
        try FileManager.default.createDirectory(at: outputDirectory, withIntermediateDirectories: true)
        let metricsLog = try MetricsLog(
            url: outputDirectory.appendingPathComponent("metrics.jsonl"), append: resumed != nil)
        let tensorBoard = config.output.tensorboard
            ? try TensorBoardWriter(logDirectory: outputDirectory.appendingPathComponent("tensorboard")) : nil

        if let step = judge?.selection.bestStep {
            // A resumed run: keep pointing at the best checkpoint so far (retention spares it).
            let best = checkpoints.root.appendingPathComponent(CheckpointDirectory.name(step: step))
            if FileManager.default.fileExists(atPath: best.path) { try checkpoints.setBest(best) }
        }
        let started = Date()
        let cpuAtStart = processCPUSeconds()
        var steppingSeconds = 0.0, steppingCPUSeconds = 0.0
        let elapsedBefore = resumed?.elapsedSeconds ?? 0
        let maxSteps = config.training.maxSteps
        let hasValidation = config.data.validation != nil
        var skippedInARow = 0
        var skippedTotal = resumed?.skippedSteps ?? 0
        var lastLoss = resumed?.lastLoss ?? .nan
        var lastValidation = resumed?.lastValidationLoss
        var stopReason = StopReason.stepBudget
        var step = resumed?.step ?? 0
        var tokensSinceLog = 0.0
        var timeOfLastLog = started
        var workersReleased = false

        while step < maxSteps {
            let elapsed = Date().timeIntervalSince(started)
            if stopFlag.isSet {
                stopReason = .signal
            } else if let budget = config.training.timeBudgetMinutes, elapsed + elapsedBefore >= budget * 60 {
                stopReason = .timeBudget
            }
            let isLast = step == maxSteps - 1 || stopReason != .stepBudget
            let evaluateEvery = config.evaluation.every
            let checkpointEvery = config.checkpoint.every
            let evaluate = hasValidation && (isLast || (evaluateEvery > 0 && (step + 1) % evaluateEvery == 0))
            var checkpoint = isLast || (checkpointEvery > 0 && (step + 1) % checkpointEvery == 0)
            // A fine-tuning evaluation may find a new best: have the state at hand to save it.
            let handoff = checkpoint || (evaluate && judge != nil)
            if handoff { try waitForSave() }
            let verify = config.distributed.checkReplicasEvery > 0 && (step + 1) % config.distributed.checkReplicasEvery == 0
            let order = StepPlan(
                step: step, learningRate: schedule.learningRate(atStep: step), evaluate: evaluate,
                checkpoint: handoff, verifyReplicas: verify, stop: isLast,
                stopReason: isLast ? stopReason.rawValue : nil)
            let metrics = try link.execute(order, snapshot: snapshot)
            steppingSeconds = Date().timeIntervalSince(started)
            steppingCPUSeconds = processCPUSeconds() - cpuAtStart

            lastLoss = metrics.loss
            let gradientNorm = metrics.gradNorm
            if metrics.skippedNonFinite {
                skippedInARow += 1
                skippedTotal += 1
            } else {
                skippedInARow = 0
            }
            tokensSinceLog += Double(metrics.tokens)
            step += 1

            if step % config.output.logEvery == 0 || isLast || metrics.skippedNonFinite {
                let now = Date()
                let tokensPerSecond = tokensSinceLog / max(now.timeIntervalSince(timeOfLastLog), 1e-9)
                tokensSinceLog = 0
                timeOfLastLog = now
                try metricsLog.write([
                    "kind": .string("train"), "step": .int(step), "loss": .double(lastLoss),
                    "lr": .double(order.learningRate), "grad_norm": .double(gradientNorm),
                    "tokens_per_second": .double(tokensPerSecond), "skipped": .bool(metrics.skippedNonFinite),
                    "step_seconds": .double(metrics.stepSeconds), "compute_seconds": .double(metrics.computeSeconds),
                    "communication_seconds": .double(metrics.communicationSeconds),
                    "optimizer_seconds": .double(metrics.optimizerSeconds),
                    "time": .double(elapsedBefore + now.timeIntervalSince(started)),
                ])
                tensorBoard?.addScalar(tag: "train/loss", value: lastLoss, step: step, wallTime: nil)
                tensorBoard?.addScalar(tag: "train/lr", value: order.learningRate, step: step, wallTime: nil)
                tensorBoard?.addScalar(tag: "train/grad_norm", value: gradientNorm, step: step, wallTime: nil)
                tensorBoard?.addScalar(tag: "train/tokens_per_second", value: tokensPerSecond, step: step, wallTime: nil)
                console.update(
                    step: step, totalSteps: maxSteps, loss: lastLoss, learningRate: order.learningRate,
                    gradNorm: gradientNorm, tokensPerSecond: tokensPerSecond, elapsed: now.timeIntervalSince(started))
            }
            if metrics.skippedNonFinite {
                console.message("step \(step): non-finite loss or gradient norm on some worker; update skipped on all")
            }
            var isBest = false
            var stopEarly = false
            if let judge, evaluate {
                let verdict = try judge.judge(logits: metrics.evaluationLogits, step: step)
                lastValidation = verdict.report.negativeLogLikelihood
                isBest = verdict.improved
                stopEarly = verdict.stop && !isLast
                try logEvaluation(verdict, step: step, log: metricsLog, tensorBoard: tensorBoard, time: elapsedBefore + Date().timeIntervalSince(started))
                checkpoint = checkpoint || isBest || stopEarly
            } else if let loss = metrics.evaluationLoss {
                lastValidation = loss
                try metricsLog.write([
                    "kind": .string("eval"), "step": .int(step), "val_loss": .double(loss),
                    "val_perplexity": .double(exp(loss)), "tokens": .int(metrics.evaluationTokens),
                    "time": .double(elapsedBefore + Date().timeIntervalSince(started)),
                ])
                tensorBoard?.addScalar(tag: "val/loss", value: loss, step: step, wallTime: nil)
                console.message(String(format: "step %d: validation loss %.4f (perplexity %.2f)", step, loss, exp(loss)))
            }
            try metricsLog.flush()
            try tensorBoard?.flush()
            if checkpoint {
                let state = CheckpointState(
                    formatVersion: CheckpointState.currentFormatVersion, step: step,
                    optimizerStep: snapshot.optimizerStep, cursor: snapshot.cursor, config: config, model: modelConfig,
                    tokenizerVocabularySize: tokenizer.vocabularySize, worldSize: link.replicaCount, labelNames: labelNames,
                    skippedSteps: skippedTotal, lastLoss: lastLoss, lastValidationLoss: lastValidation,
                    elapsedSeconds: elapsedBefore + Date().timeIntervalSince(started), temperature: judge?.temperature,
                    selection: judge?.selection)
                saveInBackground(state, isBest: isBest)
            }
            if stopEarly {
                stopReason = .earlyStopping
                console.message(
                    "step \(step): no better dev \(config.classification!.metric.rawValue) in \(config.classification!.patience) evaluations; stopping early")
                try waitForSave()
                try link.release()
                workersReleased = true
                break
            }
            if skippedInARow >= config.training.maxNonFiniteSteps && !isLast {
                try waitForSave()
                throw TrainingStopped(
                    description: """
                        \(skippedInARow) steps in a row had a non-finite loss or gradient norm (last at step \(step)); \
                        stopping (training.max_nonfinite_steps = \(config.training.maxNonFiniteSteps)). \
                        Try a lower schedule.learning_rate.
                        """)
            }
            if isLast { break }
        }
        try waitForSave()
        if step == (resumed?.step ?? 0) && !workersReleased { try link.release() }
        console.finish()

        let modelDirectory = outputDirectory.appendingPathComponent("model")
        if step > (resumed?.step ?? 0) {
            try saveModel(to: modelDirectory)
        }
        return RunSummary(
            steps: step, stopReason: stopReason, lastLoss: lastLoss, lastValidationLoss: lastValidation,
            skippedSteps: skippedTotal, seconds: Date().timeIntervalSince(started), steppingSeconds: steppingSeconds,
            steppingCPUSeconds: steppingCPUSeconds, modelDirectory: modelDirectory,
            best: judge?.selection)
    }

    /// The run's model as a Hugging Face directory with its tokenizer: the last parameters, or for a
    /// fine-tuning run with a dev set the best checkpoint's (with its temperature).
    private func saveModel(to directory: URL) throws {
        var temperature = judge?.temperature
        if judge != nil, let best = checkpoints.best, FileManager.default.fileExists(atPath: best.path) {
            let state = try TrainingCheckpoint.load(best, expectedModel: modelConfig, into: snapshot)
            temperature = state.temperature
        }
        try ModelExport.writeHuggingFace(
            parameters: UnsafeBufferPointer(snapshot.parameters), model: modelConfig, labelNames: labelNames,
            temperature: temperature, tokenizer: tokenizer, to: directory)
    }

    /// The `eval` record of a fine-tuning evaluation: JSONL, TensorBoard and a console line.
    private func logEvaluation(
        _ verdict: DevSetJudge.Verdict, step: Int, log: MetricsLog, tensorBoard: TensorBoardWriter?, time: Double
    ) throws {
        let report = verdict.report
        let temperature = judge?.temperature ?? 1
        var record: [String: MetricValue] = [
            "kind": .string("eval"), "step": .int(step), "val_loss": .double(report.negativeLogLikelihood),
            "accuracy": .double(report.accuracy), "macro_f1": .double(report.macroF1),
            "ece": .double(report.expectedCalibrationError), "ece_calibrated": .double(verdict.calibratedECE),
            "temperature": .double(temperature), "examples": .int(report.count), "best": .bool(verdict.improved),
            "time": .double(time),
        ]
        for (k, name) in report.labelNames.enumerated() {
            record["precision/\(name)"] = .double(report.precision[k])
            record["recall/\(name)"] = .double(report.recall[k])
        }
        try log.write(record)
        // The whole report (per-class figures, confusion matrix, calibration bins) beside the log.
        var full = report.asJSON
        full["step"] = step
        full["temperature"] = temperature
        full["ece_calibrated"] = verdict.calibratedECE
        let json = try JSONSerialization.data(withJSONObject: full, options: [.prettyPrinted, .sortedKeys])
        let evaluations = outputDirectory.appendingPathComponent("evaluations")
        try FileManager.default.createDirectory(at: evaluations, withIntermediateDirectories: true)
        try AtomicFile.write(json, to: evaluations.appendingPathComponent(String(format: "step-%07d.json", step)))
        tensorBoard?.addScalar(tag: "val/loss", value: report.negativeLogLikelihood, step: step, wallTime: nil)
        tensorBoard?.addScalar(tag: "val/accuracy", value: report.accuracy, step: step, wallTime: nil)
        tensorBoard?.addScalar(tag: "val/macro_f1", value: report.macroF1, step: step, wallTime: nil)
        tensorBoard?.addScalar(tag: "val/ece", value: report.expectedCalibrationError, step: step, wallTime: nil)
        console.message(String(
            format: "step %d: dev accuracy %.4f, macro-F1 %.4f, loss %.4f, ECE %.4f (%.4f at temperature %.2f)%@",
            step, report.accuracy, report.macroF1, report.negativeLogLikelihood, report.expectedCalibrationError,
            verdict.calibratedECE, temperature, verdict.improved ? ", best so far" : ""))
    }

    /// Writes the snapshot on the save queue; training continues meanwhile. The snapshot is not touched
    /// again until `waitForSave()` has returned.
    /// `isBest`: point `best` at it once written.
    private func saveInBackground(_ state: CheckpointState, isBest: Bool) {
        saveQueue.async { [self] in
            do {
                let saved = try TrainingCheckpoint.save(snapshot: snapshot, state: state, layout: layout, to: checkpoints)
                if isBest { try checkpoints.setBest(saved) }
                checkpoints.applyRetention(
                    keepLast: config.checkpoint.keepLast, keepEvery: config.checkpoint.keepEvery, protected: saved)
            } catch {
                saveError = error
            }
        }
    }

    /// Waits for the save in flight, and rethrows its failure.
    private func waitForSave() throws {
        saveQueue.sync {}
        if let error = saveError {
            saveError = nil
            throw error
        }
    }
}

/// Set from a signal handler (SIGINT, SIGTERM) and read by the coordinator between steps: the current step
/// finishes, the model is saved, and the run ends cleanly.
public final class StopFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    private var sources: [DispatchSourceSignal] = []

    public init() {}

    public var isSet: Bool { lock.withLock { value } }

    public func set() { lock.withLock { value = true } }

    /// Routes SIGINT, SIGTERM and SIGUSR1 (which mpirun forwards to every process) to this flag instead of
    /// killing the process.
    public func installSignalHandlers() {
        for signalNumber in [SIGINT, SIGTERM, SIGUSR1] {
            signal(signalNumber, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
            source.setEventHandler { [weak self] in self?.set() }
            source.resume()
            sources.append(source)
        }
    }
}

/// User plus system CPU time of this whole process (every thread), in seconds.
func processCPUSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec)
        + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
}
