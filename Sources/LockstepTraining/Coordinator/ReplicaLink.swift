import Dispatch
import LockstepDistributed
import LockstepModel
import LockstepCheckpoints

/// The coordinator's view of the replicas, however they are connected: in this process, or over MPI.
public protocol ReplicaLink: AnyObject {
    var replicaCount: Int { get }
    /// Runs one step on every replica and combines their reports. With `plan.checkpoint`, `snapshot` holds
    /// replica 0's state after the update when this returns: `snapshotFree` is called first, as late as it can
    /// be (the previous save may still be reading the snapshot), and the summary's `checkpointStallSeconds`
    /// says how long the two took. With `plan.rollBack`, every replica first takes `snapshot`'s parameters and
    /// optimizer state (`WorkerReplica.rollBack(to:)`).
    func execute(_ plan: StepPlan, snapshot: WorkerState, snapshotFree: () throws -> Void) throws -> StepSummary
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

    public func execute(_ plan: StepPlan, snapshot: WorkerState, snapshotFree: () throws -> Void) throws -> StepSummary {
        if plan.rollBack { replica.rollBack(to: snapshot) }
        let report = try replica.execute(plan)
        var summary = StepSummary([report])
        if plan.checkpoint {
            summary.checkpointStallSeconds = try ReplicaLinkTiming.seconds {
                try snapshotFree()
                snapshot.copy(from: replica.state)
            }
        }
        summary.evaluationLogits = replica.evaluationLogits
        return summary
    }

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
