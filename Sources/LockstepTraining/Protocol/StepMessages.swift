/// What the coordinator tells every process before a step. Broadcast as JSON, so fields can be added freely.
public struct StepPlan: Codable, Equatable, Sendable {
    /// The optimizer step this plan is for, counting from 0.
    public var step: Int
    /// The learning rate for this step, from the coordinator's schedule.
    public var learningRate: Double
    /// Run evaluation after this step.
    public var evaluate: Bool
    /// Hand parameters and optimizer state to the coordinator for a checkpoint after this step.
    public var checkpoint: Bool
    /// Compare the replicas' parameter checksums after this step (`verifyReplicasAgree`).
    public var verifyReplicas: Bool
    /// Do not run this step: leave the loop (after a final checkpoint if `checkpoint` is set).
    public var stop: Bool
    /// Why the run stops (step budget, time budget, signal), for the workers' logs; nil while running.
    public var stopReason: String?
    /// Before this step, take the parameters and optimizer state the coordinator sends (the last checkpoint,
    /// after loss spikes in a row), keeping the data cursor where it is.
    public var rollBack: Bool

    public init(
        step: Int, learningRate: Double, evaluate: Bool = false, checkpoint: Bool = false,
        verifyReplicas: Bool = false, stop: Bool = false, stopReason: String? = nil, rollBack: Bool = false
    ) {
        self.step = step
        self.learningRate = learningRate
        self.evaluate = evaluate
        self.checkpoint = checkpoint
        self.verifyReplicas = verifyReplicas
        self.stop = stop
        self.stopReason = stopReason
        self.rollBack = rollBack
    }
}

/// What one worker reports after a step. Travels as a fixed array of `fieldCount` Doubles (`fields`), so the
/// coordinator collects all reports with one gather; integers are exact up to 2^53.
public struct WorkerReport: Codable, Equatable, Sendable {
    public var step: Int
    /// Mean training loss over this worker's tokens of the step (all micro-batches).
    public var loss: Double
    /// Training tokens this worker processed in the step.
    public var tokens: Int
    /// Global gradient norm before clipping (the same on every worker once gradients are averaged).
    public var gradNorm: Double
    /// Seconds in forward and backward, all micro-batches.
    public var computeSeconds: Double
    /// The backward share of `computeSeconds`: the time that gradient averaging can hide behind.
    public var backwardSeconds: Double
    /// Seconds waiting for the gradient averaging after backward: what overlap did not hide.
    public var communicationSeconds: Double
    /// Seconds in clipping and the optimizer update.
    public var optimizerSeconds: Double
    /// Seconds for the whole step on this worker.
    public var stepSeconds: Double
    /// True when this step's update was skipped because some worker saw a non-finite loss or gradient norm.
    public var skippedNonFinite: Bool
    /// True when this step's update was skipped because the global loss was a spike (`fault_tolerance.spike_sigma`);
    /// every worker decides this alike.
    public var skippedSpike: Bool
    /// Sum of evaluation losses over `evaluationTokens` tokens; 0 when the step did not evaluate.
    public var evaluationLossSum: Double
    public var evaluationTokens: Int
    /// This worker's peak resident set so far (`VmHWM`), nil where the system does not tell.
    public var peakResidentBytes: Int?
    /// Seconds this step waited, before its update, for the previous step's checkpoint handoff to be copied
    /// out of this worker's buffers; 0 when none was in flight. Counted in no other timing.
    public var handoffWaitSeconds: Double

    public init(
        step: Int, loss: Double, tokens: Int, gradNorm: Double = 0, computeSeconds: Double = 0,
        communicationSeconds: Double = 0, optimizerSeconds: Double = 0, stepSeconds: Double = 0,
        skippedNonFinite: Bool = false, evaluationLossSum: Double = 0, evaluationTokens: Int = 0,
        skippedSpike: Bool = false, backwardSeconds: Double = 0, peakResidentBytes: Int? = nil,
        handoffWaitSeconds: Double = 0
    ) {
        self.step = step
        self.loss = loss
        self.tokens = tokens
        self.gradNorm = gradNorm
        self.computeSeconds = computeSeconds
        self.communicationSeconds = communicationSeconds
        self.optimizerSeconds = optimizerSeconds
        self.stepSeconds = stepSeconds
        self.skippedNonFinite = skippedNonFinite
        self.skippedSpike = skippedSpike
        self.evaluationLossSum = evaluationLossSum
        self.evaluationTokens = evaluationTokens
        self.backwardSeconds = backwardSeconds
        self.peakResidentBytes = peakResidentBytes
        self.handoffWaitSeconds = handoffWaitSeconds
    }

    public static let fieldCount = 15

    /// The fixed layout: the stored properties in declaration order, Bools as 0/1, an unknown peak resident
    /// set as -1.
    public var fields: [Double] {
        [
            Double(step), loss, Double(tokens), gradNorm, computeSeconds, communicationSeconds, optimizerSeconds,
            stepSeconds, skippedNonFinite ? 1 : 0, evaluationLossSum, Double(evaluationTokens), skippedSpike ? 1 : 0,
            backwardSeconds, peakResidentBytes.map(Double.init) ?? -1, handoffWaitSeconds,
        ]
    }

    /// Reads the fixed layout back; nil unless `fields` has `fieldCount` elements with whole counts.
    public init?(fields f: [Double]) {
        guard f.count == Self.fieldCount,
            let step = Int(exactly: f[0]), let tokens = Int(exactly: f[2]), let evaluationTokens = Int(exactly: f[10]),
            let peak = Int(exactly: f[13])
        else { return nil }
        self.init(
            step: step, loss: f[1], tokens: tokens, gradNorm: f[3], computeSeconds: f[4], communicationSeconds: f[5],
            optimizerSeconds: f[6], stepSeconds: f[7], skippedNonFinite: f[8] != 0, evaluationLossSum: f[9],
            evaluationTokens: evaluationTokens, skippedSpike: f[11] != 0, backwardSeconds: f[12],
            peakResidentBytes: peak >= 0 ? peak : nil, handoffWaitSeconds: f[14])
    }
}

/// The coordinator's view of one step over all workers, for logging.
public struct StepSummary: Equatable, Sendable {
    public var step: Int
    /// Token-weighted mean training loss over all workers.
    public var loss: Double
    public var tokens: Int
    /// The largest worker's gradient norm (they agree unless something is wrong); NaN if any is NaN.
    public var gradNorm: Double
    /// Each timing is the slowest worker's: the step waits for it.
    public var computeSeconds: Double
    public var backwardSeconds: Double
    public var communicationSeconds: Double
    public var optimizerSeconds: Double
    public var stepSeconds: Double
    /// The largest peak resident set over the workers that told theirs; nil when none did.
    public var peakResidentBytes: Int?
    public var skippedNonFinite: Bool
    /// The update was skipped as a loss spike (on every worker alike).
    public var skippedSpike: Bool
    /// Token-weighted mean evaluation loss; nil when no worker evaluated.
    public var evaluationLoss: Double?
    public var evaluationTokens: Int
    /// Classifier runs, on evaluation steps: the dev set's class logits in dev order (K per example), put
    /// together by the link from every worker's share; empty otherwise.
    public var evaluationLogits: [Float] = []
    /// On a checkpoint handoff: the seconds the coordinator spent on it before it could send the next plan,
    /// waiting for the previous save to be done with the snapshot and receiving the state's counters (its
    /// buffers arrive while the next step computes); nil otherwise.
    public var checkpointStallSeconds: Double?
    /// The slowest worker's `WorkerReport.handoffWaitSeconds`: what the previous step's handoff still held
    /// this step up.
    public var handoffWaitSeconds: Double

    /// Combines the reports of one step.
    /// - Precondition: `reports` is not empty.
    public init(_ reports: [WorkerReport]) {
        precondition(!reports.isEmpty, "StepSummary of no reports")
        step = reports[0].step
        tokens = reports.reduce(0) { $0 + $1.tokens }
        let weightedLoss = reports.reduce(0.0) { $0 + $1.loss * Double($1.tokens) }
        loss = tokens > 0 ? weightedLoss / Double(tokens) : reports.reduce(0.0) { $0 + $1.loss } / Double(reports.count)
        gradNorm = largest(reports.map(\.gradNorm))
        computeSeconds = largest(reports.map(\.computeSeconds))
        backwardSeconds = largest(reports.map(\.backwardSeconds))
        communicationSeconds = largest(reports.map(\.communicationSeconds))
        peakResidentBytes = reports.compactMap(\.peakResidentBytes).max()
        optimizerSeconds = largest(reports.map(\.optimizerSeconds))
        stepSeconds = largest(reports.map(\.stepSeconds))
        handoffWaitSeconds = largest(reports.map(\.handoffWaitSeconds))
        skippedNonFinite = reports.contains { $0.skippedNonFinite }
        skippedSpike = reports.contains { $0.skippedSpike }
        evaluationTokens = reports.reduce(0) { $0 + $1.evaluationTokens }
        let evaluationSum = reports.reduce(0.0) { $0 + $1.evaluationLossSum }
        evaluationLoss = evaluationTokens > 0 ? evaluationSum / Double(evaluationTokens) : nil
    }
}

/// The maximum that keeps a NaN (`max()` would drop it, hiding a worker's non-finite value from the log).
private func largest(_ values: [Double]) -> Double {
    values.first { $0.isNaN } ?? values.max()!
}
