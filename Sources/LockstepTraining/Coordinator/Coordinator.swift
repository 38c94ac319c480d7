import Foundation
import LockstepDistributed
import LockstepFormats
import LockstepModel
import LockstepTokenizer
import LockstepConfig
import LockstepLogging
import LockstepCheckpoints
import LockstepEvaluation

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
    /// The last step's training loss; nil when no step ran.
    public var lastLoss: Double?
    public var lastValidationLoss: Double?
    /// Updates skipped for a non-finite loss or gradient norm.
    public var skippedSteps: Int
    /// Updates skipped as loss spikes, and roll-backs to a checkpoint after spikes in a row.
    public var spikeSteps: Int = 0
    public var rollBacks: Int = 0
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
        var line = String(format: "done: %d steps (%@) in %.1f s", steps, stopReason.rawValue, seconds)
        if let lastLoss { line += String(format: ", loss %.4f", lastLoss) }
        if let validation = lastValidationLoss { line += String(format: ", validation loss %.4f", validation) }
        if let best, let step = best.bestStep, let value = best.bestValue {
            line += String(format: ", best dev %@ %.4f at step %d", best.metric.rawValue, value, step)
        }
        if skippedSteps > 0 { line += ", \(skippedSteps) skipped non-finite steps" }
        if spikeSteps > 0 { line += ", \(spikeSteps) skipped loss spikes" }
        if rollBacks > 0 { line += ", \(rollBacks) roll-back\(rollBacks == 1 ? "" : "s") to a checkpoint" }
        return line
    }
}

/// Errors that end a run on the coordinator's decision.
public struct TrainingStopped: Error, CustomStringConvertible {
    public var description: String
}

/// The coordinator role: owns the learning-rate schedule, the decision to stop, and the order of each step.
/// It never touches data or gradients: it plans steps for the replicas behind a `ReplicaLink`, and hands what
/// each step produced to the parts that decide their own cadence: `TrainingLog` (records), `Validator`
/// (evaluations, best model, early stopping) and `Checkpointer` (background saves, the final model).
///
/// One step, as docs/ARCHITECTURE.md walks it: plan (step, learning rate, evaluate? hand the state over?
/// stop?) → the replicas run it → their reports → log → evaluate → checkpoint → stop or go on.
public final class Coordinator {
    let config: RunConfig
    let link: ReplicaLink
    let modelConfig: GPTConfig
    let schedule: LearningRateSchedule
    let stopFlag: StopFlag
    let tokenizer: BPETokenizer
    /// Classifier runs: label names in id order.
    let labelNames: [String]?
    /// The checkpoint this run continues from, if any.
    let resumed: CheckpointState?
    let console: ProgressReporter
    let validator: Validator
    let checkpointer: Checkpointer
    let spikeGuard: SpikeGuard

    /// `resumed`: the state of the checkpoint whose contents the replicas were started from.
    public init(
        config: RunConfig, link: ReplicaLink, modelConfig: GPTConfig, tokenizer: BPETokenizer,
        resumed: CheckpointState? = nil, stopFlag: StopFlag = StopFlag(), console: ProgressReporter = ProgressReporter()
    ) throws {
        self.config = config
        self.link = link
        self.modelConfig = modelConfig
        self.schedule = config.schedule
        self.console = console
        self.stopFlag = stopFlag
        self.tokenizer = tokenizer
        self.resumed = resumed
        labelNames = config.task == .classification ? try config.labelMap().names : nil
        validator = try Validator(config: config, labelNames: labelNames, resumed: resumed)
        checkpointer = Checkpointer(config: config, layout: ParameterLayout(config: modelConfig))
        spikeGuard = SpikeGuard(config: config, directory: checkpointer.directory, resumed: resumed)
    }

    /// Classifier runs with a dev set: its size and K, which an MPI link needs to collect the dev logits.
    public var classifierDevSet: (examples: Int, classes: Int)? {
        validator.judge.map { ($0.labels.count, $0.labelNames.count) }
    }

    /// Where the run stands between steps.
    struct Progress {
        /// Optimizer steps completed.
        var step: Int
        var lastLoss: Double?
        var lastValidationLoss: Double?
        var skippedInARow = 0
        var skippedTotal: Int
        var stopReason: StopReason?
        /// The next plan rolls the replicas back to the checkpoint now in the snapshot.
        var rollBackNext = false
    }

    public func run() throws -> RunSummary {
        try FileManager.default.createDirectory(
            at: URL(fileURLWithPath: config.output.directory), withIntermediateDirectories: true)
        let log = try TrainingLog(config: config, console: console, resumed: resumed)
        try checkpointer.keepBest(step: validator.judge?.selection.bestStep)
        let firstStep = resumed?.step ?? 0
        var progress = Progress(
            step: firstStep, lastLoss: resumed?.lastLoss, lastValidationLoss: resumed?.lastValidationLoss,
            skippedTotal: resumed?.skippedSteps ?? 0)
        if spikeGuard.isRollBackDue && progress.step < config.training.maxSteps {
            // Saved right after the spike that called for a roll-back: roll back now, as the run would have.
            try rollBack(&progress, log: log)
        }
        let cpuAtStart = processCPUSeconds()
        var steppingSeconds = 0.0, steppingCPUSeconds = 0.0

        while progress.step < config.training.maxSteps {
            let plan = try nextPlan(&progress, elapsed: log.time)
            // The previous save has until the next handoff, a whole step later than the plan at least; a
            // handoff's buffers arrive while the next step computes, and its save starts then.
            let summary = try link.execute(plan, checkpoints: checkpointer)
            steppingSeconds = Date().timeIntervalSince(log.started)
            steppingCPUSeconds = processCPUSeconds() - cpuAtStart
            progress.step += 1
            progress.lastLoss = summary.loss
            if summary.skippedNonFinite {
                progress.skippedInARow += 1
                progress.skippedTotal += 1
            } else {
                progress.skippedInARow = 0
            }
            let rollBackDue = spikeGuard.conclude(summary, step: progress.step)
                && !plan.stop
            try log.recordStep(plan, summary)
            let outcome = try validator.conclude(plan, summary, step: progress.step, log: log)
            if let loss = outcome?.validationLoss { progress.lastValidationLoss = loss }
            try log.flush()
            let isBest = outcome?.isBest ?? false
            if checkpointer.isDue(step: progress.step, isLast: plan.stop) || isBest || outcome?.stopEarly == true {
                checkpointer.save(checkpointState(progress, elapsed: log.time), isBest: isBest)
            }
            if outcome?.stopEarly == true {
                let settings = config.classification
                console.message(
                    "step \(progress.step): no better dev \(settings?.metric.rawValue ?? "metric") in "
                        + "\(settings?.patience ?? 0) evaluations; stopping early")
                progress.stopReason = .earlyStopping
                try finishSaving()
                try link.release()
                break
            }
            if progress.skippedInARow >= config.training.maxNonFiniteSteps && !plan.stop {
                try finishSaving()
                throw TrainingStopped(
                    description: """
                        \(progress.skippedInARow) steps in a row had a non-finite loss or gradient norm (last at step \(progress.step)); \
                        stopping (training.max_nonfinite_steps = \(config.training.maxNonFiniteSteps)). \
                        Try a lower schedule.learning_rate.
                        """)
            }
            if plan.stop { break }
            if rollBackDue { try rollBack(&progress, log: log) }
        }
        try finishSaving()
        if progress.step == firstStep { try link.release() }
        console.finish()

        let modelDirectory = URL(fileURLWithPath: config.output.directory).appendingPathComponent("model")
        let modelMissing = !FileManager.default.fileExists(
            atPath: modelDirectory.appendingPathComponent(HuggingFaceModel.weightsFile).path)
        if progress.step == firstStep, resumed != nil, modelMissing {
            // Resumed from the final checkpoint of a run stopped before its export: export that checkpoint.
            try checkpointer.loadNewest(model: modelConfig)
        }
        if progress.step > firstStep || (resumed != nil && modelMissing) {
            try checkpointer.exportModel(
                to: modelDirectory, model: modelConfig, labelNames: labelNames, temperature: validator.judge?.temperature,
                preferBest: validator.judge != nil, tokenizer: tokenizer)
        }
        return RunSummary(
            steps: progress.step, stopReason: progress.stopReason ?? .stepBudget, lastLoss: progress.lastLoss,
            lastValidationLoss: progress.lastValidationLoss, skippedSteps: progress.skippedTotal,
            spikeSteps: spikeGuard.counts.skipped, rollBacks: spikeGuard.counts.rollBacks,
            seconds: Date().timeIntervalSince(log.started), steppingSeconds: steppingSeconds,
            steppingCPUSeconds: steppingCPUSeconds, modelDirectory: modelDirectory, best: validator.judge?.selection)
    }

    /// Waits for the last handoff's state to arrive and for its save, if any, to be written.
    func finishSaving() throws {
        try link.finishHandoff()
        try checkpointer.waitForSave()
    }

    /// After loss spikes in a row: loads the checkpoint to roll back to into the snapshot (once any save is done
    /// with it), which the next plan sends to every replica.
    func rollBack(_ progress: inout Progress, log: TrainingLog) throws {
        try finishSaving()
        let inARow = spikeGuard.counts.inARow
        let checkpoint = try spikeGuard.prepareRollBack(into: checkpointer.snapshot, model: modelConfig, step: progress.step)
        try log.recordRollBack(step: progress.step, to: checkpoint.step, spikes: inARow)
        progress.rollBackNext = true
    }

    /// The plan for step `progress.step`: its learning rate, and whether it is the last (step budget, or a stop
    /// asked by a signal or the time budget, recorded in `progress.stopReason`), evaluates, hands the state over
    /// for a checkpoint (or a possible new best), or checks that the replicas agree.
    func nextPlan(_ progress: inout Progress, elapsed: Double) throws -> StepPlan {
        let step = progress.step
        if stopFlag.isSet {
            progress.stopReason = .signal
        } else if let budget = config.training.timeBudgetMinutes, elapsed >= budget * 60 {
            progress.stopReason = .timeBudget
        }
        let isLast = step == config.training.maxSteps - 1 || progress.stopReason != nil
        let evaluate = validator.isDue(step: step + 1, isLast: isLast)
        let handoff = checkpointer.isDue(step: step + 1, isLast: isLast) || (evaluate && validator.mayPickBest)
        let rollBack = progress.rollBackNext
        progress.rollBackNext = false
        let checkEvery = config.distributed.checkReplicasEvery
        return StepPlan(
            step: step, learningRate: schedule.learningRate(atStep: step), evaluate: evaluate, checkpoint: handoff,
            verifyReplicas: checkEvery > 0 && (step + 1) % checkEvery == 0, stop: isLast,
            stopReason: isLast ? (progress.stopReason ?? .stepBudget).rawValue : nil, rollBack: rollBack)
    }

    /// `state.json` for a checkpoint of the state just handed over.
    func checkpointState(_ progress: Progress, elapsed: Double) -> CheckpointState {
        let snapshot = checkpointer.snapshot
        return CheckpointState(
            step: progress.step, optimizerStep: snapshot.optimizerStep, cursor: snapshot.cursor, config: config,
            model: modelConfig, tokenizerVocabularySize: tokenizer.vocabularySize, worldSize: link.replicaCount,
            labelNames: labelNames, skippedSteps: progress.skippedTotal, lastLoss: progress.lastLoss,
            lastValidationLoss: progress.lastValidationLoss, elapsedSeconds: elapsed,
            temperature: validator.judge?.temperature, selection: validator.judge?.selection,
            lossWindow: config.faultTolerance.detectsSpikes ? snapshot.lossWindow : nil, spikes: spikeGuard.counts)
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
