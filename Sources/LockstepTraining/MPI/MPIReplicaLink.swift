import Foundation
import LockstepData
import LockstepDistributed
import LockstepKernels
import LockstepModel
import LockstepConfig
import LockstepLogging
import LockstepCheckpoints

/// The coordinator's link to worker processes: plans are broadcast over the world communicator, reports
/// gathered, and a checkpoint's state sent by worker 0. The coordinator sleeps while it waits, except for the
/// handoff's buffers: it receives them after the next plan has gone out, while the workers compute, and on one
/// host copies them itself out of worker 0's memory (Open MPI's single copy).
public final class MPIReplicaLink: ReplicaLink {
    let groups: ProcessGroups
    /// Classifier runs with a dev set: its size and K, so that evaluation steps collect the workers' logits.
    var classifierDevSet: (examples: Int, classes: Int)?
    /// With `distributed.shard_optimizer`: worker w's shard of the optimizer moments (`momentShards`), which
    /// it sends at a checkpoint handoff and receives alone at a roll-back; nil when worker 0 holds them all.
    var momentShards: [Range<Int>]?

    init(groups: ProcessGroups) {
        self.groups = groups
    }

    public var replicaCount: Int { groups.workerCount }

    /// The slowest worker's seconds for the last step: how long a hang's diagnosis listens for the workers'
    /// own timeouts (theirs start after a step's computation, the coordinator's at the plan).
    private var lastStepSeconds = 0.0

    /// The snapshot of a handoff whose counters are in and whose buffers are yet to be received.
    private var arriving: CheckpointSnapshot?

    public func execute(_ plan: StepPlan, checkpoints: CheckpointSnapshot) throws -> StepSummary {
        try diagnosingHangs {
            let summary = try executeStep(plan, checkpoints: checkpoints)
            lastStepSeconds = summary.stepSeconds
            return summary
        }
    }

    /// Runs `body`; when one of its waits passes the deadline, listens for the workers' own timeouts and
    /// throws the verdict naming the silent ranks and the phase (`ProcessGroups.diagnoseHang`).
    func diagnosingHangs<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as DistributedError {
            guard let timeout = error.timeout, let limit = groups.hangTimeout else { throw error }
            throw groups.diagnoseHang(timeout, grace: min(limit, 2 + 2 * lastStepSeconds))
        }
    }

    public func finishHandoff() throws {
        try diagnosingHangs { try receiveArriving(beforeStep: nil) }
    }

    /// Receives the buffers of the handoff in flight, if any, and tells its snapshot. The workers compute
    /// meanwhile, so this waits without spinning: on one host the copy is made as the receive is posted, and
    /// over TCP the bytes come only as fast as worker 0's MPI calls move them.
    private func receiveArriving(beforeStep step: Int?) throws {
        guard let checkpoints = arriving else { return }
        groups.setPhase("checkpoint handoff" + (step.map { " during step \($0)" } ?? ""))
        try checkpoints.snapshot.receiveBuffers(over: groups.world, from: 1, momentShards: momentShards)
        arriving = nil
        checkpoints.arrived()
    }

    private func executeStep(_ plan: StepPlan, checkpoints: CheckpointSnapshot) throws -> StepSummary {
        let step = plan.step + 1
        groups.setPhase("plan of step \(step)")
        _ = try groups.broadcastOrder(.step(plan))
        try receiveArriving(beforeStep: step)
        if plan.rollBack {
            groups.setPhase("roll-back broadcast before step \(step)")
            try checkpoints.snapshot.broadcast(over: groups.world, root: ProcessGroups.coordinatorRank, momentShards: momentShards)
        }
        groups.setPhase("report of step \(step)")
        guard let reports = try groups.gatherReports(nil) else {
            throw TrainingStopped(description: "the coordinator received no worker reports")
        }
        var summary = StepSummary(reports)
        if plan.evaluate, let (examples, classes) = classifierDevSet {
            groups.setPhase("evaluation logits of step \(step)")
            summary.evaluationLogits = try receiveEvaluationLogits(examples: examples, classes: classes)
        }
        if plan.checkpoint {
            summary.checkpointStallSeconds = try ReplicaLinkTiming.seconds {
                try checkpoints.waitForSave()
                groups.setPhase("checkpoint handoff of step \(step)")
                try groups.spinning { try checkpoints.snapshot.receiveCounters(over: groups.world, from: 1) }
                checkpoints.arriving()
                arriving = checkpoints
            }
        }
        return summary
    }

    /// Worker w (world rank w + 1) holds the logits of dev examples w, w + N, ...; they are interleaved back
    /// into dev order.
    private func receiveEvaluationLogits(examples: Int, classes: Int) throws -> [Float] {
        let workers = groups.workerCount
        var logits = [Float](repeating: 0, count: examples * classes)
        for worker in 0..<min(workers, examples) {
            let mine = Array(stride(from: worker, to: examples, by: workers))
            var share = [Float](repeating: 0, count: mine.count * classes)
            try share.withUnsafeMutableBytes {
                try groups.world.receive($0.baseAddress!, byteCount: $0.count, from: worker + 1, tag: HandoffTag.evaluationLogits)
            }
            for (row, example) in mine.enumerated() {
                for k in 0..<classes { logits[example * classes + k] = share[row * classes + k] }
            }
        }
        return logits
    }

    public func release() throws {
        try diagnosingHangs {
            groups.setPhase("release of the workers")
            _ = try groups.broadcastOrder(.release)
        }
    }
}
