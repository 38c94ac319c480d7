import Foundation
import LockstepTestSupport
import Testing

@testable import LockstepDistributed

/// `InProcessGroup`: several ranks as threads of this process, with MPI's semantics and deadlines.
@Suite("In-process communicator")
struct InProcessCommunicatorTests {
    /// What one rank saw of every collective.
    struct Outcome {
        var floats: [Float] = []
        var doubles: [Double] = []
        var minimum: UInt64 = 0, maximum: UInt64 = 0, sum: UInt64 = 0, wrapped: UInt64 = 0
        var reduced: [Double] = []
        var gathered: [[Double]]?
        var greeting = ""
        var broadcastFloats: [Float] = []
        var agreed = true
        var divergence: DistributedError?
    }

    @Test func everyCollectiveOverFourRanks() throws {
        let group = InProcessGroup(size: 4, hangTimeout: 10)
        let outcomes = RankThreads.run(4) { rank -> Outcome in
            let communicator = group.communicators[rank]
            var outcome = Outcome()
            // In rank order, ((1e8 + 1) + -1e8) + 1 is exactly 1 in Float; any other order gives 0 or 2.
            outcome.floats = [Float(rank + 1), [1e8, 1, -1e8, 1][rank]]
            try communicator.allreduceSum(&outcome.floats, count: 2)
            outcome.doubles = [Double(rank) * 0.5, -Double(rank)]
            try communicator.allreduceSum(&outcome.doubles, count: 2)
            var value = UInt64(10 + rank)
            outcome.minimum = value
            try communicator.allreduce(&outcome.minimum, count: 1, op: .min)
            outcome.maximum = value
            try communicator.allreduce(&outcome.maximum, count: 1, op: .max)
            try communicator.allreduce(&value, count: 1, op: .sum)
            outcome.sum = value
            outcome.wrapped = rank == 0 ? .max : 1
            try communicator.allreduce(&outcome.wrapped, count: 1, op: .sum)
            outcome.reduced = [Double(rank + 1), 1]
            try communicator.reduceSum(&outcome.reduced, count: 2, root: 2)
            outcome.gathered = try communicator.gather([Double(rank), Double(rank * rank)], root: 1)
            outcome.greeting = try communicator.broadcast(rank == 3 ? "from rank 3" : nil, root: 3)
            outcome.broadcastFloats = rank == 0 ? [1.5, -2.5, 3.25] : [0, 0, 0]
            try outcome.broadcastFloats.withUnsafeMutableBufferPointer { try communicator.broadcast($0, root: 0) }
            try communicator.barrier()
            outcome.agreed = try communicator.allAgree(flag: rank != 2)
            do {
                try communicator.verifyReplicasAgree(checksum: rank == 3 ? 7 : 5, step: 9)
            } catch let error as DistributedError {
                outcome.divergence = error
            }
            return outcome
        }
        for (rank, result) in outcomes.enumerated() {
            let outcome = try result.get()
            #expect(outcome.floats == [10, 1], "rank \(rank)")
            #expect(outcome.doubles == [3, -6], "rank \(rank)")
            #expect(outcome.minimum == 10 && outcome.maximum == 13 && outcome.sum == 46, "rank \(rank)")
            #expect(outcome.wrapped == 2, "rank \(rank): UInt64.max + 1 + 1 + 1 wraps to 2")
            // Only the root holds the sum; the others keep their buffers.
            #expect(outcome.reduced == (rank == 2 ? [10, 4] : [Double(rank + 1), 1]), "rank \(rank)")
            #expect(outcome.gathered == (rank == 1 ? [[0, 0], [1, 1], [2, 4], [3, 9]] : nil), "rank \(rank)")
            #expect(outcome.greeting == "from rank 3")
            #expect(outcome.broadcastFloats == [1.5, -2.5, 3.25])
            #expect(!outcome.agreed)
            #expect(outcome.divergence == .replicasDiverged(step: 9, checksums: [5, 5, 5, 7], disagreeingWorkers: [3]))
        }
    }

    /// Messages between two ranks with one tag arrive in the order sent, whatever is received first.
    @Test func pointToPointKeepsOrderPerTag() throws {
        let group = InProcessGroup(size: 3, hangTimeout: 10)
        let results = RankThreads.run(3) { rank -> [Int64] in
            let communicator = group.communicators[rank]
            func send(_ value: Int64, to destination: Int, tag: Int) throws {
                var value = value
                try communicator.send(&value, byteCount: 8, to: destination, tag: tag)
            }
            func receive(from source: Int, tag: Int) throws -> Int64 {
                var value: Int64 = 0
                try communicator.receive(&value, byteCount: 8, from: source, tag: tag)
                return value
            }
            switch rank {
            case 0:
                for (value, tag) in [(1, 7), (10, 8), (2, 7), (20, 8), (3, 7)] { try send(Int64(value), to: 2, tag: tag) }
                try communicator.barrier()
                return []
            case 1:
                try send(100, to: 2, tag: 7)
                // After rank 2 has everything: nothing more is waiting for it.
                try communicator.barrier()
                return []
            default:
                var received: [Int64] = []
                for _ in 0..<2 { received.append(try receive(from: 0, tag: 8)) }
                received.append(try receive(from: 1, tag: 7))
                for _ in 0..<3 { received.append(try receive(from: 0, tag: 7)) }
                try communicator.barrier()
                return received
            }
        }
        #expect(try results[2].get() == [10, 20, 100, 1, 2, 3])
        for result in results { _ = try result.get() }
    }

    @Test func probeAndReceiveCheckSizesAndRanks() throws {
        let group = InProcessGroup(size: 2, hangTimeout: 10)
        let communicator = group.communicators[0]
        var bytes: [UInt8] = [1, 2, 3]
        // Sends never wait, so one thread can play both ends here.
        try group.communicators[1].send(&bytes, byteCount: 3, to: 0, tag: 5)
        #expect(try communicator.probe(tag: 5).map { [$0.source, $0.byteCount] } == [1, 3])
        #expect(try communicator.probe(tag: 6) == nil)
        var wrong = [UInt8](repeating: 0, count: 4)
        #expect(throws: DistributedError.nothingToReceive(tag: 5, byteCount: 4, pending: 3)) {
            try communicator.receive(&wrong, byteCount: 4, from: 1, tag: 5)
        }
        var right = [UInt8](repeating: 0, count: 3)
        try communicator.receive(&right, byteCount: 3, from: 1, tag: 5)
        #expect(right == bytes)
        #expect(throws: DistributedError.noSuchRank(call: "send", rank: 2, size: 2)) {
            try communicator.send(&bytes, byteCount: 3, to: 2, tag: 5)
        }
    }

    /// A rank that never joins: the others' waits end at the deadline, naming themselves, their phase and
    /// the missing rank; after they withdraw, the group still works.
    @Test func deadlineNamesTheRankThatNeverJoins() throws {
        let group = InProcessGroup(size: 3, hangTimeout: 0.3)
        // Rank 1 waits longer, so that rank 0's withdrawal is settled before rank 1's deadline.
        group.communicators[1].hangTimeout = 0.8
        let started = monotonicSeconds()
        let results = RankThreads.run(3) { rank -> Double in
            let communicator = group.communicators[rank]
            communicator.phase = "the barrier of rank \(rank)"
            let start = monotonicSeconds()
            if rank != 2 { try communicator.barrier() }
            return monotonicSeconds() - start
        }
        #expect(monotonicSeconds() - started < 4)
        #expect(throws: Never.self) { try results[2].get() }
        for rank in 0...1 {
            let error = #expect(throws: DistributedError.self) { try results[rank].get() }
            guard case .timedOut(let named, let phase, let waited, let waitingFor)? = error else {
                Issue.record("rank \(rank): \(String(describing: error))")
                continue
            }
            #expect(named == rank && phase == "the barrier of rank \(rank)")
            #expect(waited >= (rank == 0 ? 0.3 : 0.8) && waited < 3)
            #expect(waitingFor == (rank == 0 ? [2] : [0, 2]))
            #expect(error?.description.contains("rank \(rank) timed out") == true)
        }
        // Everyone withdrew: a full barrier and a sum go through.
        let again = RankThreads.run(3) { rank -> Double in
            var value = Double(rank)
            try group.communicators[rank].barrier()
            try group.communicators[rank].allreduceSum(&value, count: 1)
            return value
        }
        for result in again { #expect(try result.get() == 3) }
    }

    /// A receive whose sender stays silent names the sender's world rank.
    @Test func receiveDeadlineNamesTheWorldRankOfTheSource() throws {
        let group = InProcessGroup(size: 3, worldRanks: [1, 2, 3], hangTimeout: 0.1)
        let communicator = group.communicators[0]
        communicator.phase = "evaluation logits"
        var firstBuffer: [UInt8] = [0], secondBuffer: [UInt8] = [0]
        try group.communicators[1].send([UInt8(4)], byteCount: 1, to: 0, tag: 3)
        let error = #expect(throws: DistributedError.self) {
            try firstBuffer.withUnsafeMutableBytes { first in
                try secondBuffer.withUnsafeMutableBytes { second in
                    try communicator.receiveFromEach(
                        [first.baseAddress!, second.baseAddress!], byteCount: 1, from: [1, 2], tag: 3)
                }
            }
        }
        guard case .timedOut(let rank, let phase, _, let waitingFor)? = error else {
            Issue.record("\(String(describing: error))")
            return
        }
        #expect(rank == 1 && phase == "evaluation logits" && waitingFor == [3])
    }

    @Test func mismatchedCollectivesFailOnEveryRank() {
        let group = InProcessGroup(size: 2, hangTimeout: 5)
        let results = RankThreads.run(2) { rank in
            if rank == 0 {
                try group.communicators[0].barrier()
            } else {
                var value = 1.0
                try group.communicators[1].allreduceSum(&value, count: 1)
            }
        }
        for result in results {
            let error = #expect(throws: DistributedError.self) { try result.get() }
            guard case .mismatchedCollective? = error else {
                Issue.record("not a mismatch: \(String(describing: error))")
                continue
            }
        }
    }

    /// The gradient buckets over three in-process workers: the blocking sums, then the mean.
    @Test func gradientBucketsAverageOverThreads() throws {
        let group = InProcessGroup(size: 3, hangTimeout: 10)
        let results = RankThreads.run(3) { rank -> (gradients: [Float], idle: Bool) in
            var gradients = (0..<6).map { Float($0 + 1) * Float(rank + 1) }
            var idle = false
            try gradients.withUnsafeMutableBufferPointer { buffer in
                let buckets = try GradientBuckets(
                    communicator: group.communicators[rank], buffer: buffer, ranges: [3..<6, 0..<2])
                try buckets.bucketReady(0)
                idle = try buckets.poll()
                try buckets.bucketReady(1, wait: true)
                try buckets.finish()
            }
            return (gradients, idle)
        }
        // Element i is (i + 1) * (1 + 2 + 3) / 3 = 2 (i + 1); element 2 lies in no bucket and is left alone.
        for (rank, result) in results.enumerated() {
            let (gradients, idle) = try result.get()
            #expect(gradients == [2, 4, Float(3 * (rank + 1)), 8, 10, 12])
            #expect(idle, "nothing is in flight: in-process buckets reduce at once")
        }
    }

    /// The control plane's collection of reports and the hang diagnosis over in-process ranks: one worker
    /// answers, one reports its own timeout, one stays silent.
    @Test func collectionTimesOutAndTheDiagnosisNamesTheSilentWorker() throws {
        let all = ProcessGroups.inProcess(workers: 3, hangTimeout: 0.3)
        #expect(all.map(\.isCoordinator) == [true, false, false, false])
        #expect(all.map(\.workerIndex) == [nil, 0, 1, 2])
        #expect(all.allSatisfy { $0.workerCount == 3 && !$0.isSingleProcess })
        let workerTimeout = WorkerTimeout(rank: 2, phase: "gradient sync of step 4", waitedSeconds: 0.3, waitingFor: [3])
        let results = RankThreads.run(4) { rank -> (WorkerTimeout, DistributedError)? in
            let groups = all[rank]
            switch rank {
            case 0:
                groups.setPhase("report of step 4")
                do {
                    _ = try groups.collectFromWorkers(nil, count: 2)
                } catch let error as DistributedError {
                    guard let timeout = error.timeout else { throw error }
                    return (timeout, groups.diagnoseHang(timeout, grace: 1))
                }
            case 1:
                _ = try groups.collectFromWorkers([1, 2], count: 2)
            case 2:
                groups.reportTimeout(workerTimeout)
            default:
                break
            }
            return nil
        }
        let (timeout, verdict) = try #require(try results[0].get())
        #expect(timeout.rank == 0 && timeout.phase == "report of step 4" && timeout.waitingFor == [2, 3])
        #expect(verdict == .hang(phase: "report of step 4", waitedSeconds: verdict.waitedSeconds ?? 0, silent: [3], timeouts: [workerTimeout]))
        #expect(verdict.description.contains("rank 3 did not answer"))
    }
}

extension DistributedError {
    /// The seconds of a `.hang`, for comparing verdicts whose wait is measured.
    fileprivate var waitedSeconds: Double? {
        guard case .hang(_, let seconds, _, _) = self else { return nil }
        return seconds
    }
}
