import LockstepModel

/// How a replica combines its gradients and decisions with the other replicas. One implementation is a
/// lone replica (single-process training); the MPI one averages over the workers' communicator.
public protocol ReplicaGroup: AnyObject {
    var replicaCount: Int { get }
    var replicaIndex: Int { get }
    /// What the last micro-step's backward tells the group, so that averaging can start and progress while
    /// backward computes.
    var backwardEvents: BackwardEvents { get }
    /// Returns once the model's gradients hold the sum over all replicas. The mean is that sum times the
    /// returned factor, 1 / `replicaCount`, which the caller folds into clipping and the optimizer step instead
    /// of spending a pass over the gradients on it.
    func finishGradientSum() throws -> Float
    /// True only when `flag` is true on every replica.
    func allAgree(_ flag: Bool) throws -> Bool
    /// The mean of `value` over the replicas, the same bits on every replica (the loss-spike decision rests on it).
    func mean(_ value: Double) throws -> Double
}

/// The only replica: averaging is a no-op.
public final class LoneReplica: ReplicaGroup {
    public init() {}
    public var replicaCount: Int { 1 }
    public var replicaIndex: Int { 0 }
    public var backwardEvents: BackwardEvents { BackwardEvents() }
    public func finishGradientSum() throws -> Float { 1 }
    public func allAgree(_ flag: Bool) throws -> Bool { flag }
    public func mean(_ value: Double) throws -> Double { value }
}
