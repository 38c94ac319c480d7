/// How a replica combines its gradients and decisions with the other replicas. One implementation is a
/// lone replica (single-process training); the MPI one averages over the workers' communicator.
public protocol ReplicaGroup: AnyObject {
    var replicaCount: Int { get }
    var replicaIndex: Int { get }
    /// Block `block`'s gradients are final: their averaging may start while backward continues.
    func blockGradientsReady(_ block: Int)
    /// Returns once `gradients` holds the sum over all replicas. The mean is that sum times the returned
    /// factor, 1 / `replicaCount`, which the caller folds into clipping and the optimizer step instead of
    /// spending a pass over the gradients on it.
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
    public func blockGradientsReady(_ block: Int) {}
    public func finishGradientSum() throws -> Float { 1 }
    public func allAgree(_ flag: Bool) throws -> Bool { flag }
    public func mean(_ value: Double) throws -> Double { value }
}
