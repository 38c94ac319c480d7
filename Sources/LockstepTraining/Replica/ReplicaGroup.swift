import LockstepModel
import LockstepOptimizer

/// How a replica combines its gradients and decisions with the other replicas. One implementation is a
/// lone replica (single-process training); the MPI one averages over the workers' communicator.
public protocol ReplicaGroup: UpdateExchange {
    var replicaCount: Int { get }
    var replicaIndex: Int { get }
    /// What the last micro-step's backward tells the group, so that averaging can start and progress while
    /// backward computes.
    var backwardEvents: BackwardEvents { get }
    /// Returns once the model's gradients hold the sum over all replicas. The mean is that sum times the
    /// returned factor, 1 / `replicaCount`, which the caller folds into clipping and the optimizer step instead
    /// of spending a pass over the gradients on it.
    func finishGradientSum() throws -> Float
    /// Seconds the last `finishGradientSum` waited, before anything else, for the previous step's checkpoint
    /// handoff to be copied out of this replica's buffers (`MPIReplicaGroup.startHandoff`); 0 after none.
    var handoffWaitSeconds: Double { get }
    /// True only when `flag` is true on every replica.
    func allAgree(_ flag: Bool) throws -> Bool
    /// The mean of `value` over the replicas, the same bits on every replica (the loss-spike decision rests on it).
    func mean(_ value: Double) throws -> Double
    /// With sharded optimizer state (ZeRO-1): the range of the parameter buffer this replica updates, and, after
    /// `finishGradientSum`, the sum over the replicas of its gradients (`range.count` Floats). Nil when every
    /// replica updates all parameters from the whole gradient buffer, which then holds the sum.
    var gradientShard: (range: Range<Int>, sums: UnsafeMutableBufferPointer<Float>)? { get }
    /// The global L2 norm of the mean gradient, the same bits on every replica, from this replica's
    /// `gradientSum` (the whole buffer's sum, or its shard's: then the shards' squared norms are added over the
    /// replicas) and `meanFactor` (1 / `replicaCount`).
    func meanGradientNorm(gradientSum: UnsafeMutableBufferPointer<Float>, meanFactor: Float) throws -> Float
    /// After the optimizer updated this replica's shard of `parameters` (all `parameters.count` of them): every
    /// replica's updated shard to every replica (an all-gather). Nothing to do when every replica updates all.
    func shareUpdatedParameters(_ parameters: UnsafeMutableBufferPointer<Float>) throws
}

/// The only replica: averaging is a no-op.
public final class LoneReplica: ReplicaGroup {
    public init() {}
    public var replicaCount: Int { 1 }
    public var replicaIndex: Int { 0 }
    public var backwardEvents: BackwardEvents { BackwardEvents() }
    public func finishGradientSum() throws -> Float { 1 }
    public var handoffWaitSeconds: Double { 0 }
    public func allAgree(_ flag: Bool) throws -> Bool { flag }
    public func mean(_ value: Double) throws -> Double { value }
    public var gradientShard: (range: Range<Int>, sums: UnsafeMutableBufferPointer<Float>)? { nil }
    public func meanGradientNorm(gradientSum: UnsafeMutableBufferPointer<Float>, meanFactor: Float) throws -> Float {
        AdamWOptimizer.meanGradientNorm(gradientSum: gradientSum, meanFactor: meanFactor)
    }
    public func shareUpdatedParameters(_ parameters: UnsafeMutableBufferPointer<Float>) throws {}
    public func shareParts(_ buffer: UnsafeMutableBufferPointer<Float>, counts: [Int]) throws {}
}
