import Dispatch
import LockstepDistributed
import LockstepModel
import LockstepCheckpoints

/// The coordinator's copy of replica 0's state for checkpoints (`Checkpointer`), into which a handoff goes
/// while a background save of the previous one may still be reading it.
public protocol CheckpointSnapshot: AnyObject {
    var snapshot: WorkerState { get }
    /// Returns once no save reads `snapshot` any more (and rethrows a failed save's error).
    func waitForSave() throws
    /// `snapshot` holds the handoff's counters, and its buffers are on their way: a save asked for now waits
    /// for `arrived()`.
    func arriving()
    /// `snapshot` holds the whole state.
    func arrived()
}

/// The coordinator's view of the replicas, however they are connected: in this process, or over MPI.
public protocol ReplicaLink: AnyObject {
    var replicaCount: Int { get }
    /// Runs one step on every replica and combines their reports. With `plan.checkpoint`, replica 0's state
    /// after the update goes into `checkpoints.snapshot`: after `waitForSave()`, called as late as it can be,
    /// whole when this returns, or with `arriving()` its buffers while the next step computes, until
    /// `arrived()` (in the next `execute`, or `finishHandoff`). The summary's `checkpointStallSeconds` says how
    /// long the step was held up. With `plan.rollBack`, every replica first takes the snapshot's parameters and
    /// optimizer state (`WorkerReplica.rollBack(to:)`).
    func execute(_ plan: StepPlan, checkpoints: CheckpointSnapshot) throws -> StepSummary
    /// Completes a handoff still arriving: before the coordinator reads or refills the snapshot itself, or ends.
    func finishHandoff() throws
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

    public func execute(_ plan: StepPlan, checkpoints: CheckpointSnapshot) throws -> StepSummary {
        if plan.rollBack { replica.rollBack(to: checkpoints.snapshot) }
        let report = try replica.execute(plan)
        var summary = StepSummary([report])
        if plan.checkpoint {
            summary.checkpointStallSeconds = try ReplicaLinkTiming.seconds {
                try checkpoints.waitForSave()
                checkpoints.snapshot.copy(from: replica.state)
            }
        }
        summary.evaluationLogits = replica.evaluationLogits
        return summary
    }

    /// The copy is made in `execute`.
    public func finishHandoff() throws {}

    public func release() throws {}
}

/// Wall seconds of a piece of the coordinator's work.
enum ReplicaLinkTiming {
    static func seconds(_ body: () throws -> Void) rethrows -> Double {
        let start = DispatchTime.now().uptimeNanoseconds
        try body()
        return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    }
}
