import LockstepDistributed
import LockstepModel
import LockstepCheckpoints

/// The coordinator's view of the replicas, however they are connected: in this process, or over MPI.
public protocol ReplicaLink: AnyObject {
    var replicaCount: Int { get }
    /// Runs one step on every replica and combines their reports. With `plan.checkpoint`, `snapshot` holds
    /// replica 0's state after the update when this returns. With `plan.rollBack`, every replica first takes
    /// `snapshot`'s parameters and optimizer state (`WorkerReplica.rollBack(to:)`).
    func execute(_ plan: StepPlan, snapshot: WorkerState) throws -> StepSummary
    /// Lets the replicas go without another step (a resumed run that had nothing left to do).
    func release() throws
}

/// A replica in this process: `lockstep train` with one worker runs both roles in one process.
public final class LocalReplicaLink: ReplicaLink {
    let replica: WorkerReplica

    public init(replica: WorkerReplica) {
        self.replica = replica
    }

    public var replicaCount: Int { 1 }

    public func execute(_ plan: StepPlan, snapshot: WorkerState) throws -> StepSummary {
        if plan.rollBack { replica.rollBack(to: snapshot) }
        let report = try replica.execute(plan)
        if plan.checkpoint { snapshot.copy(from: replica.state) }
        var summary = StepSummary([report])
        summary.evaluationLogits = replica.evaluationLogits
        return summary
    }

    public func release() throws {}
}
