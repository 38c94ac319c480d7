import LockstepKernels
import LockstepModel

/// What a training step asks of an optimizer, whichever kind (`optimizer.kind`): AdamW over every tensor, or
/// Muon over the blocks' matrices with AdamW over the rest. Both keep their state in two moment buffers of the
/// parameters' layout (`m`, `v`), so checkpoints, broadcasts and roll-backs treat every kind alike.
public protocol Optimizer: AnyObject {
    var layout: ParameterLayout { get }
    /// The range of the parameter buffer whose moments this optimizer holds (see `AdamWOptimizer.shard`).
    var shard: Range<Int> { get }
    /// First moments (Muon: its matrices' momentum buffers), `shard.count` Floats.
    var m: UnsafeMutableBufferPointer<Float> { get }
    /// Second moments, `shard.count` Floats (0 where Muon updates).
    var v: UnsafeMutableBufferPointer<Float> { get }
    /// Steps taken so far (AdamW's bias correction counts them). Restored from checkpoints.
    var stepCount: Int { get set }
    /// Clears the moments and the step count.
    func reset()
    /// One training step's update of the parameters from gradients that hold the sum over the replicas (of
    /// `shard`): the mean is the sum times `meanFactor` (1 / replicas), clipped to `maxNorm` (0: off) by its
    /// global `norm` (the caller has checked it is finite on every replica).
    /// - Parameters:
    ///   - scheduledLearningRate: the schedule's rate at this step (AdamW's rate; Muon scales its own by it).
    ///   - settings: AdamW's betas, epsilon and weight decay.
    /// - Throws: what the exchange between workers throws (Muon shares its orthogonalised updates).
    func step(
        parameters: UnsafeMutableBufferPointer<Float>, gradientSum: UnsafeMutableBufferPointer<Float>, norm: Float,
        meanFactor: Float, maxNorm: Float, scheduledLearningRate: Double, settings: AdamWSettings
    ) throws
}

/// How the workers that update the same parameters share work inside an optimizer step: Muon's
/// orthogonalisations are split among them and the results exchanged.
public protocol UpdateExchange: AnyObject {
    var replicaCount: Int { get }
    var replicaIndex: Int { get }
    /// All-gather in place: worker r's `counts[r]` Floats, at offset `counts[..<r].reduce(0, +)` of `buffer`,
    /// are copied to the same place on every worker. Every worker passes the same `counts`, one per worker,
    /// summing to `buffer.count`. Collective: every worker calls it.
    func shareParts(_ buffer: UnsafeMutableBufferPointer<Float>, counts: [Int]) throws
}

/// A worker alone: nothing to share.
public final class SoleWorker: UpdateExchange {
    public init() {}
    public var replicaCount: Int { 1 }
    public var replicaIndex: Int { 0 }
    public func shareParts(_ buffer: UnsafeMutableBufferPointer<Float>, counts: [Int]) throws {}
}

extension AdamWOptimizer: Optimizer {
    public func step(
        parameters: UnsafeMutableBufferPointer<Float>, gradientSum: UnsafeMutableBufferPointer<Float>, norm: Float,
        meanFactor: Float, maxNorm: Float, scheduledLearningRate: Double, settings: AdamWSettings
    ) {
        step(
            parameters: parameters, gradientSum: gradientSum, norm: norm, meanFactor: meanFactor, maxNorm: maxNorm,
            learningRate: Float(scheduledLearningRate), settings: settings)
    }
}
