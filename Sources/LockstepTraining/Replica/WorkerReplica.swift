import Foundation
import LockstepData
import LockstepDistributed
import LockstepKernels
import LockstepModel
import LockstepConfig
import LockstepOptimizer
import LockstepCheckpoints
import LockstepLogging

/// Validation loss summed over windows, so that sums from several replicas add up.
public struct EvaluationSums: Equatable, Sendable {
    public var lossSum: Double
    public var windows: Double
    public var meanLoss: Double { windows > 0 ? lossSum / windows : .nan }
}

/// One model replica: its slice of the data stream, forward and backward over micro-batches, gradient
/// averaging with the other replicas, clipping and the optimizer's update. Replicas never decide anything on
/// their own: the learning rate and whether to evaluate come from the coordinator.
public final class WorkerReplica {
    public let model: GPT
    /// AdamW, or Muon with AdamW (`optimizer.kind`).
    public let optimizer: any Optimizer
    /// What is learned from which data: pretraining or classification.
    let task: ReplicaTask
    let group: ReplicaGroup
    let config: RunConfig
    let accumulationSteps: Int
    /// Classifier runs: the dev logits of the last `execute` that evaluated (this replica's share, K per
    /// example); empty otherwise. The link passes them to the coordinator.
    public private(set) var evaluationLogits: [Float] = []
    /// This replica's state over its own parameter and moment buffers (no copy).
    private let ownState: WorkerState
    /// `fault_tolerance.spike_sigma` > 0: decides which global losses are spikes, alike on every replica.
    private var spikeDetector: LossSpikeDetector?

    init(config: RunConfig, model: GPT, optimizer: any Optimizer, task: ReplicaTask, group: ReplicaGroup) throws {
        self.config = config
        self.model = model
        self.optimizer = optimizer
        self.task = task
        self.group = group
        self.accumulationSteps = try config.accumulationSteps(workers: group.replicaCount)
        ownState = WorkerState(
            borrowing: model.parameters, firstMoments: optimizer.m, secondMoments: optimizer.v, momentRange: optimizer.shard)
        let faultTolerance = config.faultTolerance
        spikeDetector = faultTolerance.detectsSpikes
            ? LossSpikeDetector(sigma: faultTolerance.spikeSigma, capacity: faultTolerance.spikeWindow) : nil
    }

    /// This replica's state: its own buffers, with the optimizer step and data cursor brought up to date.
    /// Sending, broadcasting or copying it moves the replica's real state.
    public var state: WorkerState {
        ownState.optimizerStep = optimizer.stepCount
        ownState.cursor = cursor
        ownState.lossWindow = spikeDetector?.window ?? []
        return ownState
    }

    /// Continues from `source`: a loaded checkpoint, or `state` after a broadcast filled it. With sharded
    /// optimizer state only the moments of this replica's shard are taken.
    public func restore(from source: WorkerState) {
        if source !== ownState { ownState.copy(from: source) }
        optimizer.stepCount = source.optimizerStep
        cursor = source.cursor
        spikeDetector?.reset(to: source.lossWindow)
    }

    /// After loss spikes in a row: takes the parameters and optimizer state of `source` (the last checkpoint,
    /// or `state` after the coordinator's broadcast filled it) but keeps the data cursor, so training goes on
    /// with the data past the spikes. The spike detector starts over with an empty window.
    public func rollBack(to source: WorkerState) {
        if source !== ownState {
            _ = model.parameters.update(fromContentsOf: source.parameters)
            ownState.copyMoments(from: source)
        }
        optimizer.stepCount = source.optimizerStep
        spikeDetector?.reset()
    }

    /// Where the next global batch starts; restored from checkpoints.
    public var cursor: DataCursor {
        get { task.cursor }
        set { task.cursor = newValue }
    }

    var adamSettings: AdamWSettings {
        AdamWSettings(
            beta1: Float(config.optimizer.beta1), beta2: Float(config.optimizer.beta2),
            epsilon: Float(config.optimizer.epsilon), weightDecay: Float(config.optimizer.weightDecay))
    }

    /// One optimizer step as `plan` says, then the evaluation it asks for. Gradients are averaged over
    /// replicas only on the last micro-step; a non-finite loss or norm on any replica, or a global loss that the
    /// spike detector calls a spike, skips the update on all of them alike.
    public func execute(_ plan: StepPlan) throws -> WorkerReport {
        var report = try trainStep(learningRate: plan.learningRate)
        report.step = plan.step
        evaluationLogits = []
        if plan.evaluate {
            let evaluation = evaluate()
            report.evaluationLossSum = evaluation.lossSum
            report.evaluationTokens = evaluation.count
            evaluationLogits = evaluation.logits
        }
        return report
    }

    public func trainStep(learningRate: Double) throws -> WorkerReport {
        let start = Date()
        task.loadNextBatch()
        model.zeroGradients()
        var lossSum = 0.0
        var backwardSeconds = 0.0
        for microStep in 0..<accumulationSteps {
            // Averaging over replicas starts during the last micro-step's backward only: before it, the
            // gradients are not final.
            let isLast = microStep == accumulationSteps - 1
            lossSum += Double(task.forward(microBatch: microStep))
            let backwardStart = Date()
            task.backward(lossScale: 1 / Float(accumulationSteps), events: isLast ? group.backwardEvents : BackwardEvents())
            backwardSeconds += Date().timeIntervalSince(backwardStart)
        }
        let syncStart = Date()
        let meanFactor = try group.finishGradientSum()
        let handoffWaitSeconds = group.handoffWaitSeconds
        let syncSeconds = Date().timeIntervalSince(syncStart) - handoffWaitSeconds
        let optimizerStart = Date()

        // What this replica updates from: the whole gradient sum, or with sharded optimizer state its shard's.
        let gradientSum = group.gradientShard?.sums ?? model.gradients
        let norm = try group.meanGradientNorm(gradientSum: gradientSum, meanFactor: meanFactor)
        let loss = lossSum / Double(accumulationSteps)
        let everyoneFinite = try group.allAgree(norm.isFinite && loss.isFinite)
        // Every replica sees the same global loss and holds the same window, so all decide alike, before any
        // of them updates.
        var spike = false
        if everyoneFinite, var detector = spikeDetector {
            spike = detector.observe(try group.mean(loss))
            spikeDetector = detector
        }
        var gatherSeconds = 0.0
        if everyoneFinite && !spike {
            try optimizer.step(
                parameters: model.parameters, gradientSum: gradientSum, norm: norm, meanFactor: meanFactor,
                maxNorm: Float(config.training.gradClip), scheduledLearningRate: learningRate, settings: adamSettings)
            let gatherStart = Date()
            try group.shareUpdatedParameters(model.parameters)
            gatherSeconds = Date().timeIntervalSince(gatherStart)
        }
        let end = Date()
        return WorkerReport(
            step: 0, loss: loss, tokens: task.tokensPerStep, gradNorm: Double(norm),
            computeSeconds: optimizerStart.timeIntervalSince(start) - syncSeconds - handoffWaitSeconds,
            communicationSeconds: syncSeconds + gatherSeconds,
            optimizerSeconds: end.timeIntervalSince(optimizerStart) - gatherSeconds, stepSeconds: end.timeIntervalSince(start),
            skippedNonFinite: !everyoneFinite, skippedSpike: spike, backwardSeconds: backwardSeconds,
            peakResidentBytes: ProcessMemory.peakResidentBytes(), handoffWaitSeconds: handoffWaitSeconds)
    }

    /// This replica's share of the validation set (item i belongs to replica i mod N).
    func evaluate() -> TaskEvaluation {
        task.evaluate(replicaIndex: group.replicaIndex, replicaCount: group.replicaCount)
    }
}
