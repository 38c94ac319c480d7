import Foundation
import LockstepTestSupport
import Testing

@testable import LockstepDistributed

/// Tests that call MPI in this process (a singleton MPI job) or start mpirun. Serialized: MPI is initialised
/// with `MPI_THREAD_FUNNELED`, so two tests must not call it at once, and concurrent mpirun jobs on two cores
/// would only slow each other.
@Suite(.serialized) struct MPIRunTests {
    @Test func allreduceAcrossThreeProcesses() throws {
        let result = try MPIRun.run(processes: 3, executable: "mpi-allreduce-check", arguments: ["4099"])
        #expect(result.status == 0, "mpirun failed:\n\(result.output)")
        for rank in 0..<3 {
            #expect(result.output.contains("rank \(rank) of 3: allreduce of 4099 floats ok"), "\(result.output)")
        }
    }

    @Test func localCommunicatorIsIdentity() throws {
        let local = LocalCommunicator()
        var values: [Float] = [1, 2, 3]
        try values.withUnsafeMutableBufferPointer { try local.allreduceSum($0.baseAddress!, count: 3) }
        #expect(values == [1, 2, 3])
        #expect(local.rank == 0 && local.size == 1)
    }

    @Test func singletonWorldIsOneProcess() throws {
        let world = try MPICommunicator.world()
        #expect(world.size == 1 && world.rank == 0)
        var values: [Double] = [1.5, -2]
        try values.withUnsafeMutableBufferPointer { try world.allreduceSum($0.baseAddress!, count: 2) }
        #expect(values == [1.5, -2])
    }

    // MARK: - In this process, over a singleton MPI world

    @Test func singletonJobPlaysBothRoles() throws {
        let groups = try ProcessGroups.fromMPI()
        #expect(groups.isSingleProcess && groups.isCoordinator && groups.isWorker)
        #expect(groups.workerIndex == 0 && groups.workerCount == 1)
        #expect(try groups.sendToWorkers(Probe(step: 3, note: "plan")) == Probe(step: 3, note: "plan"))
    }

    /// Every collective in its sleeping, non-blocking form over a world of one, with pieces of 3 elements.
    @Test func sleepingCollectivesOverSingletonWorld() throws {
        let world = try MPICommunicator.world()
        world.waitPolicy = .idle
        world.maxCountPerCall = 3
        var floats: [Float] = [1, 2, 3, 4, 5, 6, 7]
        try world.allreduceSum(&floats, count: 7)
        #expect(floats == [1, 2, 3, 4, 5, 6, 7])
        var doubles: [Double] = [1, 2, 3, 4]
        try world.reduceSum(&doubles, count: 4, root: 0)
        #expect(doubles == [1, 2, 3, 4])
        var words: [UInt64] = [5, 9]
        try world.allreduce(&words, count: 2, op: .max)
        #expect(words == [5, 9])
        // A gather is not split into pieces: too large is an error, not a silent truncation.
        #expect(throws: DistributedError.countTooLarge(call: "MPI_Gather", count: 16, limit: 3)) {
            try world.gather([1.5, 2.5], root: 0)
        }
        world.maxCountPerCall = 64
        #expect(try world.gather([1.5, 2.5], root: 0) == [[1.5, 2.5]])
        #expect(try world.reduceSum([4, 5], root: 0) == [4, 5])
        #expect(try world.broadcast(Probe(step: 9, note: "x"), root: 0).note == "x")
        try world.barrier()
        #expect(try world.allAgree(flag: false) == false)
        try world.verifyReplicasAgree(checksum: 12345, step: 1)
    }

    /// The non-blocking bucket path over a world of one: sums are identities, the mean divides by one.
    @Test func bucketsOverSingletonWorld() throws {
        let world = try MPICommunicator.world()
        world.maxCountPerCall = 4
        var gradients = (0..<10).map { Float($0) }
        try gradients.withUnsafeMutableBufferPointer { buffer in
            let buckets = try GradientBuckets(communicator: world, buffer: buffer, ranges: [6..<10, 0..<6])
            try buckets.bucketReady(0)
            try buckets.poll()
            try buckets.bucketReady(1)
            try buckets.finish()
        }
        #expect(gradients == (0..<10).map { Float($0) })
    }

    // MARK: - Real mpirun jobs: one coordinator and three workers

    @Test func controlPlaneOverSteps() throws {
        let result = try MPIRun.run(processes: 4, executable: "lockstep-distributed-check", arguments: ["control", "4"])
        #expect(result.status == 0, "mpirun failed:\n\(result.output)")
        #expect(result.output.contains("coordinator of 3 workers: control plane ok over 4 steps"), "\(result.output)")
        for worker in 0..<3 {
            #expect(result.output.contains("worker \(worker) of 3 workers: control plane ok"), "\(result.output)")
        }
    }

    @Test func controlPlaneWithOneWorker() throws {
        let result = try MPIRun.run(processes: 2, executable: "lockstep-distributed-check", arguments: ["control", "2"])
        #expect(result.status == 0, "mpirun failed:\n\(result.output)")
        #expect(result.output.contains("worker 0 of 1 workers: control plane ok over 2 steps"), "\(result.output)")
    }

    /// Exact equality with sum / N: the values are small integers, so every partial sum is exact in Float.
    /// 100 003 floats in 5 buckets, MPI calls in pieces of 4096 to exercise the splitting.
    @Test func bucketedAveragingEqualsMean() throws {
        let result = try MPIRun.run(
            processes: 4, executable: "lockstep-distributed-check", arguments: ["buckets", "100003", "4096"])
        #expect(result.status == 0, "mpirun failed:\n\(result.output)")
        for worker in 0..<3 {
            #expect(result.output.contains("worker \(worker) of 3 workers: buckets ok for 100003 floats"), "\(result.output)")
        }
    }

    /// The benchmark's bandwidth scenario over one coordinator and two workers: 100 003 floats in 4 buckets,
    /// 2 timed runs; it checks every sum itself (non-zero status otherwise) and worker 0 prints one JSON line.
    @Test func allreduceBandwidthPrintsOneJSONLine() throws {
        let result = try MPIRun.run(
            processes: 3, executable: "lockstep-distributed-check", arguments: ["allreduce-bandwidth", "100003", "4", "2"])
        #expect(result.status == 0, "mpirun failed:\n\(result.output)")
        let lines = result.output.split(separator: "\n").filter { $0.hasPrefix("{") }
        #expect(lines.count == 1, "\(result.output)")
        let record = try lines.first.flatMap {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
        #expect(record?["floats"] as? Int == 100_003 && record?["bytes"] as? Int == 400_012, "\(result.output)")
        #expect(record?["workers"] as? Int == 2 && record?["buckets"] as? Int == 4, "\(result.output)")
        for key in ["bucketed_gb_per_s", "raw_gb_per_s", "bucketed_over_raw"] {
            let value = (record?[key] as? NSNumber)?.doubleValue ?? 0
            #expect(value > 0 && value.isFinite, "\(key) in \(result.output)")
        }
    }

    @Test func divergedReplicaIsNamed() throws {
        let result = try MPIRun.run(processes: 4, executable: "lockstep-distributed-check", arguments: ["replicas"])
        #expect(result.status == 0, "mpirun failed:\n\(result.output)")
        for worker in 0..<3 {
            #expect(result.output.contains("worker \(worker): caught: replicas diverged at step 8: worker(s) 1 disagree"), "\(result.output)")
            #expect(result.output.contains("worker \(worker) of 3 workers: replica checks ok"), "\(result.output)")
        }
    }

    /// Initial parameters broadcast from worker 0 make the replicas agree; worker 0 then sends them to the
    /// coordinator in 4096-byte pieces, and they arrive bit for bit.
    @Test func parametersReachReplicasAndCoordinator() throws {
        let result = try MPIRun.run(processes: 4, executable: "lockstep-distributed-check", arguments: ["handoff", "10007", "4096"])
        #expect(result.status == 0, "mpirun failed:\n\(result.output)")
        #expect(result.output.contains("coordinator of 3 workers: handoff ok for 10007 floats"), "\(result.output)")
    }

    /// A worker killed with SIGKILL while the others sleep-wait in collectives ends the whole job, non-zero,
    /// within 10 s, and mpirun's message names the rank (world rank 2 is worker 1).
    @Test func killedWorkerEndsTheJob() throws {
        let start = Date()
        let result = try MPIRun.run(processes: 4, executable: "lockstep-distributed-check", arguments: ["kill-worker"], timeout: 30)
        let seconds = Date().timeIntervalSince(start)
        #expect(result.status != 0, "\(result.output)")
        #expect(seconds < 10, "the job took \(seconds) s to end")
        #expect(result.output.contains("process rank 2") && result.output.contains("signal 9"), "\(result.output)")
        #expect(!result.output.contains("outlived"), "\(result.output)")
    }

    /// Rank 1 never joins: rank 0's small collective (spinning), large blocking collective (behind the readiness
    /// barrier) and receive (sleeping) each throw `DistributedError.timedOut` after the 1 s deadline, naming
    /// the phase and rank 1; then rank 0 ends the job with MPI_Abort (status 3), as the coordinator does.
    @Test func waitsPastTheDeadlineThrowNamingPhaseAndRank() throws {
        let start = Date()
        let result = try MPIRun.run(processes: 2, executable: "lockstep-distributed-check", arguments: ["hang", "1"], timeout: 60)
        let seconds = Date().timeIntervalSince(start)
        #expect(result.status != 0, "\(result.output)")
        #expect(result.output.contains("hang check ok: 3 timeouts of 1.0 s"), "\(result.output)")
        for phase in ["small collective", "large collective", "receive"] {
            #expect(
                result.output.contains("rank 0 caught: rank 0 timed out after 1.")
                    && result.output.contains("waiting in hang check (\(phase)) for rank 1"), "\(result.output)")
        }
        #expect(seconds < 20, "the job took \(seconds) s")
    }

    /// The deadline error's text names rank, phase and wait; the coordinator's verdict names the silent ranks.
    @Test func timeoutMessagesNameRankPhaseAndWait() {
        let own = DistributedError.timedOut(rank: 1, phase: "gradient sync of step 3", waitedSeconds: 5.02, waitingFor: [2])
        #expect(own.description == "rank 1 timed out after 5.0 s waiting in gradient sync of step 3 for rank 2")
        let verdict = DistributedError.hang(
            phase: "report of step 3", waitedSeconds: 5, silent: [2], timeouts: [own.timeout!])
        #expect(verdict.description == "hang detected: rank 2 did not answer within 5 s (report of step 3); "
            + "rank 1 timed out after 5.0 s waiting in gradient sync of step 3 for rank 2")
        let both = DistributedError.hang(phase: "report of step 9", waitedSeconds: 5, silent: [1, 2], timeouts: [])
        #expect(both.description == "hang detected: ranks 1, 2 did not answer within 5 s (report of step 9)")
    }

    /// The coordinator waits 1 s for reports (one worker computing, two sleeping), then the workers wait 0.5 s
    /// for a plan; each waiting side must use under 30% of a core (about 1% measured; a spinning wait is 100%
    /// of a core on an idle machine).
    @Test func waitingDoesNotSpin() throws {
        let result = try MPIRun.run(
            processes: 4, executable: "lockstep-distributed-check", arguments: ["idle-cpu", "1", "0.3"])
        #expect(result.status == 0, "mpirun failed:\n\(result.output)")
        let figures = result.output.split(separator: "\n").filter { $0.contains("% of a core") }
        for line in figures { print(line) }
        #expect(figures.count == 4, "\(result.output)")
        #expect(result.output.contains("coordinator of 3 workers: idle cpu ok"), "\(result.output)")
    }
}

/// A small Codable message, as the control plane carries the step plans.
private struct Probe: Codable, Equatable {
    var step: Int
    var note: String
}
