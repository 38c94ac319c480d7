import Foundation
import LockstepCheckpoints
import LockstepConfig
import LockstepDistributed
import LockstepEvaluation
import LockstepFormats
import LockstepLogging

/// Where a run's numbers go: `metrics.jsonl`, TensorBoard scalars and the console. It decides its own cadence
/// (`output.log_every`, the last step, and any skipped step) and keeps the tokens/s window between records.
final class TrainingLog {
    let metrics: MetricsLog
    let tensorBoard: TensorBoardWriter?
    let console: ProgressReporter
    let outputDirectory: URL
    let logEvery: Int
    let totalSteps: Int
    /// Seconds of training before this process started (a resumed run's earlier time).
    let elapsedBefore: Double
    let started = Date()
    private var tokensSinceRecord = 0.0
    /// The steps' `handoffWaitSeconds` since the last record: what checkpoint handoffs held them up.
    private var handoffWaitSinceRecord = 0.0
    private var timeOfLastRecord = Date()

    /// Opens the run's logs. A run resumed from the checkpoint of step S holds each step once: `metrics.jsonl`
    /// loses the records past S (which the run logs again) before it is appended to, and TensorBoard gets its
    /// restart marker at step S + 1, which makes it drop the earlier files' events from that step on.
    init(config: RunConfig, console: ProgressReporter, resumed: CheckpointState?) throws {
        outputDirectory = URL(fileURLWithPath: config.output.directory)
        let metricsURL = outputDirectory.appendingPathComponent("metrics.jsonl")
        if let resumed {
            let dropped = try MetricsLog.dropRecords(after: resumed.step, in: metricsURL)
            if dropped > 0 {
                console.message("\(metricsURL.path): dropped \(dropped) records past step \(resumed.step), which this run logs again")
            }
        }
        metrics = try MetricsLog(url: metricsURL, append: resumed != nil)
        tensorBoard = config.output.tensorboard
            ? try TensorBoardWriter(logDirectory: outputDirectory.appendingPathComponent("tensorboard")) : nil
        if let resumed {
            tensorBoard?.addSessionStart(step: resumed.step + 1)
            try tensorBoard?.flush()
        }
        self.console = console
        logEvery = config.output.logEvery
        totalSteps = config.training.maxSteps
        elapsedBefore = resumed?.elapsedSeconds ?? 0
    }

    /// Training time so far, this process's and any resumed run's.
    var time: Double { elapsedBefore + Date().timeIntervalSince(started) }

    /// After step `plan.step` ran: a `train` record when one is due.
    func recordStep(_ plan: StepPlan, _ summary: StepSummary) throws {
        let step = plan.step + 1
        tokensSinceRecord += Double(summary.tokens)
        handoffWaitSinceRecord += summary.handoffWaitSeconds
        if summary.skippedNonFinite {
            console.message("step \(step): non-finite loss or gradient norm on some worker; update skipped on all")
        }
        if summary.skippedSpike {
            console.message(String(format: "step %d: loss %.4f is a spike; update skipped on all workers", step, summary.loss))
        }
        let skipped = summary.skippedNonFinite || summary.skippedSpike
        guard step % logEvery == 0 || plan.stop || skipped else { return }
        let now = Date()
        let tokensPerSecond = tokensSinceRecord / max(now.timeIntervalSince(timeOfLastRecord), 1e-9)
        tokensSinceRecord = 0
        timeOfLastRecord = now
        var record: [String: MetricValue] = [
            "kind": .string("train"), "step": .int(step), "loss": .double(summary.loss),
            "lr": .double(plan.learningRate), "grad_norm": .double(summary.gradNorm),
            "tokens_per_second": .double(tokensPerSecond), "skipped": .bool(skipped),
            "spike": .bool(summary.skippedSpike),
            "step_seconds": .double(summary.stepSeconds), "compute_seconds": .double(summary.computeSeconds),
            "backward_seconds": .double(summary.backwardSeconds),
            "communication_seconds": .double(summary.communicationSeconds),
            "optimizer_seconds": .double(summary.optimizerSeconds), "time": .double(time),
        ]
        if let peak = summary.peakResidentBytes { record["peak_rss_bytes"] = .int(peak) }
        if let stall = summary.checkpointStallSeconds { record["checkpoint_stall_seconds"] = .double(stall) }
        if handoffWaitSinceRecord > 0 { record["handoff_wait_seconds"] = .double(handoffWaitSinceRecord) }
        handoffWaitSinceRecord = 0
        try metrics.write(record)
        tensorBoard?.addScalars(
            [
                ("train/loss", summary.loss), ("train/lr", plan.learningRate), ("train/grad_norm", summary.gradNorm),
                ("train/tokens_per_second", tokensPerSecond),
            ], step: step)
        console.update(
            step: step, totalSteps: totalSteps, loss: summary.loss, learningRate: plan.learningRate,
            gradNorm: summary.gradNorm, tokensPerSecond: tokensPerSecond, elapsed: now.timeIntervalSince(started),
            peakResidentBytes: summary.peakResidentBytes)
    }

    /// A roll-back after `spikes` loss spikes in a row ending at `step`, to the checkpoint of step `checkpointStep`.
    func recordRollBack(step: Int, to checkpointStep: Int, spikes: Int) throws {
        try metrics.write([
            "kind": .string("rollback"), "step": .int(step), "checkpoint_step": .int(checkpointStep),
            "spikes": .int(spikes), "time": .double(time),
        ])
        try metrics.flush()
        console.message(
            "step \(step): \(spikes) loss spikes in a row; rolling back to the parameters and optimizer state of the "
                + "checkpoint of step \(checkpointStep), continuing with the data after step \(step)")
    }

    /// A language model's validation loss.
    func recordValidation(loss: Double, tokens: Int, step: Int) throws {
        try metrics.write([
            "kind": .string("eval"), "step": .int(step), "val_loss": .double(loss),
            "val_perplexity": .double(exp(loss)), "tokens": .int(tokens), "time": .double(time),
        ])
        tensorBoard?.addScalar(tag: "val/loss", value: loss, step: step)
        console.message(String(format: "step %d: validation loss %.4f (perplexity %.2f)", step, loss, exp(loss)))
    }

    /// A fine-tuning evaluation: the `eval` record, the whole report in `evaluations/step-N.json`, TensorBoard
    /// and a console line.
    func recordEvaluation(_ verdict: DevSetJudge.Verdict, temperature: Double, step: Int) throws {
        let report = verdict.report
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
        try metrics.write(record)
        var full = report.asJSON
        full["step"] = step
        full["temperature"] = temperature
        full["ece_calibrated"] = verdict.calibratedECE
        let json = try JSONSerialization.data(withJSONObject: full, options: [.prettyPrinted, .sortedKeys])
        let evaluations = outputDirectory.appendingPathComponent("evaluations")
        try FileManager.default.createDirectory(at: evaluations, withIntermediateDirectories: true)
        try AtomicFile.write(json, to: evaluations.appendingPathComponent(String(format: "step-%07d.json", step)))
        tensorBoard?.addScalars(
            [
                ("val/loss", report.negativeLogLikelihood), ("val/accuracy", report.accuracy),
                ("val/macro_f1", report.macroF1), ("val/ece", report.expectedCalibrationError),
            ], step: step)
        console.message(String(
            format: "step %d: dev accuracy %.4f, macro-F1 %.4f, loss %.4f, ECE %.4f (%.4f at temperature %.2f)%@",
            step, report.accuracy, report.macroF1, report.negativeLogLikelihood, report.expectedCalibrationError,
            verdict.calibratedECE, temperature, verdict.improved ? ", best so far" : ""))
    }

    /// Makes this step's records visible to readers (tests, `tail -f`, TensorBoard).
    func flush() throws {
        try metrics.flush()
        try tensorBoard?.flush()
    }
}
