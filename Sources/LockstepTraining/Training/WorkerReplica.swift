import Foundation
import LockstepData
import LockstepDistributed
import LockstepKernels
import LockstepModel

/// Validation loss summed over windows, so that sums from several replicas add up.
public struct EvaluationSums: Equatable, Sendable {
    public var lossSum: Double
    public var windows: Double
    public var meanLoss: Double { windows > 0 ? lossSum / windows : .nan }
}

/// One model replica: its slice of the data stream, forward and backward over micro-batches, gradient
/// averaging with the other replicas, clipping and the AdamW update. Replicas never decide anything on
/// their own: the learning rate and whether to evaluate come from the coordinator.
public final class WorkerReplica {
    public let model: GPT
    public let optimizer: AdamWOptimizer
    public let stream: PretrainingStream
    let validation: TokenWindowDataset?
    let group: ReplicaGroup
    let config: RunConfig
    let accumulationSteps: Int
    /// This replica's windows of one global batch: `(accumulationSteps × microBatch, T)` each.
    let inputs: UnsafeMutableBufferPointer<Int32>
    let targets: UnsafeMutableBufferPointer<Int32>

    public init(
        config: RunConfig, model: GPT, stream: PretrainingStream, validation: TokenWindowDataset?, group: ReplicaGroup
    ) throws {
        self.config = config
        self.model = model
        self.optimizer = AdamWOptimizer(layout: model.layout)
        self.stream = stream
        self.validation = validation
        self.group = group
        self.accumulationSteps = try config.accumulationSteps(workers: group.replicaCount)
        let windows = stream.localBatchWindows
        precondition(windows == accumulationSteps * config.training.microBatchSize)
        inputs = .allocate(capacity: windows * config.training.sequenceLength)
        targets = .allocate(capacity: windows * config.training.sequenceLength)
    }

    deinit {
        inputs.deallocate()
        targets.deallocate()
    }

    var adamSettings: AdamWSettings {
        AdamWSettings(
            beta1: Float(config.optimizer.beta1), beta2: Float(config.optimizer.beta2),
            epsilon: Float(config.optimizer.epsilon), weightDecay: Float(config.optimizer.weightDecay))
    }

    /// One optimizer step as `plan` says, then the evaluation it asks for. Gradients are averaged over
    /// replicas only on the last micro-step; a non-finite loss or norm on any replica skips the update on all
    /// of them alike.
    public func execute(_ plan: StepPlan) throws -> WorkerReport {
        var report = try trainStep(learningRate: plan.learningRate)
        report.step = plan.step
        if plan.evaluate {
            let sums = evaluate()
            let time = Double(config.training.sequenceLength)
            report.evaluationLossSum = sums.lossSum * time
            report.evaluationTokens = Int(sums.windows * time)
        }
        return report
    }

    public func trainStep(learningRate: Double) throws -> WorkerReport {
        let start = Date()
        let micro = config.training.microBatchSize
        let time = config.training.sequenceLength
        stream.nextBatch(inputs: inputs.baseAddress!, targets: targets.baseAddress!)
        model.zeroGradients()
        var lossSum = 0.0
        var syncSeconds = 0.0
        for microStep in 0..<accumulationSteps {
            let offset = microStep * micro * time
            let loss = model.forward(
                tokens: inputs.baseAddress! + offset, targets: targets.baseAddress! + offset, batch: micro)
            lossSum += Double(loss)
            let isLast = microStep == accumulationSteps - 1
            model.backward(
                lossScale: 1 / Float(accumulationSteps),
                onBlockGradientsReady: isLast ? { [group] block in group.blockGradientsReady(block) } : nil)
        }
        let syncStart = Date()
        try group.finishGradientAveraging()
        syncSeconds += Date().timeIntervalSince(syncStart)
        let optimizerStart = Date()

        let gradients = model.gradients
        let norm = GradientClipping.globalNorm(gradients.baseAddress!, count: gradients.count)
        let loss = lossSum / Double(accumulationSteps)
        let finite = norm.isFinite && loss.isFinite
        let everyoneFinite = try group.allAgree(finite)
        if everyoneFinite {
            if config.training.gradClip > 0 {
                GradientClipping.clip(
                    gradients.baseAddress!, count: gradients.count, norm: norm, maxNorm: Float(config.training.gradClip))
            }
            optimizer.step(
                parameters: model.parameters, gradients: gradients, learningRate: Float(learningRate),
                settings: adamSettings)
        }
        let end = Date()
        return WorkerReport(
            step: 0, loss: loss, tokens: accumulationSteps * micro * time, gradNorm: Double(norm),
            computeSeconds: optimizerStart.timeIntervalSince(start) - syncSeconds, communicationSeconds: syncSeconds,
            optimizerSeconds: end.timeIntervalSince(optimizerStart), stepSeconds: end.timeIntervalSince(start),
            skippedNonFinite: !everyoneFinite)
    }

    /// Loss over this replica's share of the first `evaluation.max_windows` validation windows
    /// (window i belongs to replica i mod N), in micro-batches.
    public func evaluate() -> EvaluationSums {
        guard let validation else { return EvaluationSums(lossSum: 0, windows: 0) }
        let limit = config.evaluation.maxWindows == 0
            ? validation.windowCount : min(config.evaluation.maxWindows, validation.windowCount)
        let mine = Array(stride(from: group.replicaIndex, to: limit, by: group.replicaCount))
        return ValidationLoss.sums(
            model: model, dataset: validation, windows: mine, batch: config.training.microBatchSize,
            sequenceLength: config.training.sequenceLength, inputs: inputs.baseAddress!, targets: targets.baseAddress!)
    }
}
