import Foundation
import LockstepData
import LockstepKernels
import LockstepModel

/// What one optimizer step produced on one replica. Summable over replicas: the coordinator divides the
/// sums by the replica count (loss) or keeps them (tokens, skipped).
public struct ReplicaStepMetrics: Equatable, Sendable {
    /// Mean loss over this replica's micro-batches.
    public var loss: Double
    /// Global gradient norm after averaging, before clipping (identical on every replica).
    public var gradientNorm: Double
    public var tokens: Double
    /// 1 when the update was skipped because some replica saw a non-finite loss or gradient norm.
    public var skipped: Double
    public var computeSeconds: Double
    public var syncSeconds: Double

    public static let zero = ReplicaStepMetrics(
        loss: 0, gradientNorm: 0, tokens: 0, skipped: 0, computeSeconds: 0, syncSeconds: 0)

    var asArray: [Double] { [loss, gradientNorm, tokens, skipped, computeSeconds, syncSeconds] }

    init(loss: Double, gradientNorm: Double, tokens: Double, skipped: Double, computeSeconds: Double, syncSeconds: Double) {
        self.loss = loss
        self.gradientNorm = gradientNorm
        self.tokens = tokens
        self.skipped = skipped
        self.computeSeconds = computeSeconds
        self.syncSeconds = syncSeconds
    }

    init(_ values: [Double]) {
        self.init(
            loss: values[0], gradientNorm: values[1], tokens: values[2], skipped: values[3],
            computeSeconds: values[4], syncSeconds: values[5])
    }
}

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

    /// One optimizer step at `learningRate`. Gradients are averaged over replicas only on the last
    /// micro-step; a non-finite loss or norm on any replica skips the update on all of them alike.
    public func trainStep(learningRate: Double) throws -> ReplicaStepMetrics {
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
            if isLast { group.beginGradientAveraging(gradients: model.gradients) }
            model.backward(
                lossScale: 1 / Float(accumulationSteps),
                onBlockGradientsReady: isLast ? { [group] block in group.blockGradientsReady(block) } : nil)
        }
        let syncStart = Date()
        try group.finishGradientAveraging()
        syncSeconds += Date().timeIntervalSince(syncStart)

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
        let computeSeconds = Date().timeIntervalSince(start) - syncSeconds
        return ReplicaStepMetrics(
            loss: loss, gradientNorm: Double(norm), tokens: Double(accumulationSteps * micro * time),
            skipped: everyoneFinite ? 0 : 1, computeSeconds: computeSeconds, syncSeconds: syncSeconds)
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
