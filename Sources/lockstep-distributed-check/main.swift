// Scenarios of the coordinator/worker protocol, run under mpirun by Tests/LockstepDistributedTests. Each checks
// its own results on every rank, prints one "ok" line per rank, and exits non-zero on the first failure.
//
//   mpirun -np 4 lockstep-distributed-check control [steps]
//   mpirun -np 4 lockstep-distributed-check buckets [floats] [maxCountPerCall]
//   mpirun -np 4 lockstep-distributed-check replicas
//   mpirun -np 4 lockstep-distributed-check handoff [floats] [maxCountPerCall]
//   mpirun -np 4 lockstep-distributed-check idle-cpu [seconds] [maxShare] [--blocking]
//   mpirun -np 4 lockstep-distributed-check kill-worker
//   mpirun -np 2 lockstep-distributed-check hang [seconds]
//   mpirun -np 3 lockstep-distributed-check allreduce-bandwidth [floats] [buckets] [repeats] [tail]
// allreduce-bandwidth checks its sums too, but prints a single JSON line, from worker 0 (for scripts/benchmark.py).
import Foundation
import LockstepDistributed
import LockstepRandom
import LockstepTraining

/// Ends the whole job: the other ranks may be waiting in a collective this rank will never join.
func fail(_ message: String) -> Never {
    FileHandle.standardError.write("lockstep-distributed-check: \(message)\n".data(using: .utf8)!)
    MPIRuntime.abort(code: 1)
}

func check(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fail(message()) }
}

func argument(_ index: Int, default value: Int) -> Int {
    CommandLine.arguments.count > index ? Int(CommandLine.arguments[index]) ?? value : value
}

func role(_ groups: ProcessGroups) -> String {
    groups.workerIndex.map { "worker \($0)" } ?? "coordinator"
}

/// Small integers from a seeded SplitMix64, so sums of a few of them are exact in Float.
func smallIntegers(count: Int, seed: UInt64) -> [Float] {
    var random = SplitMix64(seed: seed &* SplitMix64.increment &+ 1)
    return (0..<count).map { _ in Float(Int(random.next() % 33) - 16) }
}

func hostName() -> String {
    var name = [CChar](repeating: 0, count: 256)
    gethostname(&name, name.count - 1)
    return String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

func cpuSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6
        + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
}

func wallSeconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}

// MARK: - Scenarios

/// The coordinator sends a plan per step and a final stop plan with a long reason; workers check each plan,
/// report, and the coordinator checks every report and the summary.
func control(_ groups: ProcessGroups, steps: Int) throws {
    func expectedRate(_ step: Int) -> Double { 0.001 * Double(step + 1) / 3 }
    func report(worker: Int, step: Int) -> WorkerReport {
        WorkerReport(
            step: step, loss: Double(worker + 1) * expectedRate(step), tokens: 100 * (worker + 1),
            gradNorm: 0.5, computeSeconds: Double(worker), stepSeconds: 1, skippedNonFinite: worker == 1 && step == 1,
            evaluationLossSum: step % 2 == 0 ? 2.5 : 0, evaluationTokens: step % 2 == 0 ? 10 : 0)
    }
    let longReason = String(repeating: "step budget reached; ", count: 500)
    var step = 0
    while true {
        var plan: StepPlan? = nil
        if groups.isCoordinator {
            Thread.sleep(forTimeInterval: 0.02)  // the workers wait for the plan meanwhile
            plan = step == steps
                ? StepPlan(step: step, learningRate: 0, stop: true, stopReason: longReason)
                : StepPlan(step: step, learningRate: expectedRate(step), evaluate: step % 2 == 0, verifyReplicas: true)
        }
        let received = try groups.broadcastPlan(plan)
        check(received.step == step, "\(role(groups)) got plan for step \(received.step), expected \(step)")
        if received.stop {
            check(step == steps && received.stopReason == longReason, "\(role(groups)): bad stop plan at step \(step)")
            break
        }
        check(received.learningRate == expectedRate(step), "\(role(groups)): learning rate \(received.learningRate)")
        check(received.evaluate == (step % 2 == 0) && received.verifyReplicas, "\(role(groups)): flags wrong")

        if let index = groups.workerIndex, let workers = groups.workers {
            let parameters = [Float](repeating: Float(step), count: 1000)
            try workers.verifyReplicasAgree(checksum: parameters.withUnsafeBufferPointer(parameterChecksum), step: step)
            check(try workers.allAgree(flag: true), "worker \(index): allAgree(true) was false")
        }
        let reports = try groups.gatherReports(groups.workerIndex.map { report(worker: $0, step: step) })
        if groups.isCoordinator {
            guard let reports else { fail("coordinator got no reports") }
            check(reports.count == groups.workerCount, "coordinator got \(reports.count) reports")
            for (worker, got) in reports.enumerated() {
                check(got == report(worker: worker, step: step), "step \(step): worker \(worker) reported \(got)")
            }
            let summary = StepSummary(reports)
            let n = groups.workerCount
            check(summary.tokens == 50 * n * (n + 1), "summary tokens \(summary.tokens)")
            check(summary.computeSeconds == Double(n - 1), "summary compute seconds \(summary.computeSeconds)")
            check(summary.skippedNonFinite == (n > 1 && step == 1), "summary skipped \(summary.skippedNonFinite)")
            check(summary.evaluationLoss == (step % 2 == 0 ? 2.5 * Double(n) / Double(10 * n) : nil), "summary eval loss")
        } else {
            check(reports == nil, "a worker received reports")
        }
        step += 1
    }
    print("\(role(groups)) of \(groups.workerCount) workers: control plane ok over \(steps) steps on host \(hostName())")
}

/// Bucketed averaging of a buffer of small integers (exact in Float) equals sum / N, for buckets given in
/// reverse order with MPI calls split in pieces of `maxCount`; then the single-allreduce mode, twice over.
func buckets(_ groups: ProcessGroups, count: Int, maxCount: Int) throws {
    if let index = groups.workerIndex, let workers = groups.workers {
        (workers as? MPICommunicator)?.maxCountPerCall = maxCount
        let n = groups.workerCount
        let all = (0..<n).map { smallIntegers(count: count, seed: UInt64($0)) }
        let factor = 1 / Float(n)
        let expected = (0..<count).map { i in (0..<n).reduce(Float(0)) { $0 + all[$1][i] } * factor }
        // Uneven buckets covering the buffer, listed last first, as backward produces them.
        let cuts = [0, count / 7, count / 3, count / 2, count - 5, count]
        let ranges = zip(cuts, cuts.dropFirst()).map { $0 ..< $1 }.reversed().map { $0 }
        var buffer = all[index]
        try buffer.withUnsafeMutableBufferPointer { buffer in
            // Progress by polls, then by a progress thread (which must exist: mpirun's Open MPI gives
            // MPI_THREAD_SERIALIZED), where the polls do nothing and the buckets must still complete.
            for progressThread in [false, true] {
                let buckets = try GradientBuckets(
                    communicator: workers, buffer: buffer, ranges: ranges, progressThread: progressThread)
                check(buckets.hasProgressThread == progressThread, "worker \(index): progress thread \(buckets.hasProgressThread)")
                for round in 0..<2 {
                    for bucket in ranges.indices {
                        try buckets.bucketReady(bucket)
                        try buckets.poll()
                    }
                    if progressThread { Thread.sleep(forTimeInterval: 0.01) }
                    try buckets.finish()
                    let wrong = (0..<count).filter { buffer[$0] != expected[$0] }
                    check(
                        wrong.isEmpty,
                        "worker \(index) round \(round), progress thread \(progressThread): \(wrong.count) wrong, first at \(wrong.first ?? -1)")
                    for i in 0..<count { buffer[i] = all[index][i] }
                }
            }
            let buckets = try GradientBuckets(communicator: workers, buffer: buffer, ranges: ranges)
            try buckets.allreduceAll()
            let wrong = (0..<count).filter { buffer[$0] != expected[$0] }
            check(wrong.isEmpty, "worker \(index) allreduceAll: \(wrong.count) wrong, first at \(wrong.first ?? -1)")
        }
    }
    try groups.world.barrier()
    print("\(role(groups)) of \(groups.workerCount) workers: buckets ok for \(count) floats in pieces of \(maxCount)")
}

/// Identical replicas pass the check; one changed float on worker 1 is caught on every worker, naming worker 1
/// and the step. Then `allAgree` with one dissenting worker.
func replicas(_ groups: ProcessGroups) throws {
    if let index = groups.workerIndex, let workers = groups.workers {
        var parameters = smallIntegers(count: 100_003, seed: 42)
        try workers.verifyReplicasAgree(checksum: parameters.withUnsafeBufferPointer(parameterChecksum), step: 7)
        if index == 1 { parameters[50_001] += 1e-3 }
        do {
            try workers.verifyReplicasAgree(checksum: parameters.withUnsafeBufferPointer(parameterChecksum), step: 8)
            fail("worker \(index): diverged replicas passed the check")
        } catch let error as DistributedError {
            guard case .replicasDiverged(let step, _, let odd) = error, step == 8, odd == [1] else {
                fail("worker \(index): wrong error \(error)")
            }
            print("worker \(index): caught: \(error)")
        }
        check(try workers.allAgree(flag: true), "worker \(index): all true gave false")
        check(try !workers.allAgree(flag: index != groups.workerCount - 1), "worker \(index): one false gave true")
    }
    try groups.world.barrier()
    print("\(role(groups)) of \(groups.workerCount) workers: replica checks ok")
}

/// The coordinator waits `seconds` for the workers' reports while worker 0 computes and the others sleep; then
/// the workers wait `seconds` for a plan. Each waiting side's CPU time / wall time must stay under `maxShare`.
func idleCPU(_ groups: ProcessGroups, seconds: Double, maxShare: Double) throws {
    try groups.world.barrier()
    let cpu0 = cpuSeconds(), wall0 = wallSeconds()
    if let index = groups.workerIndex {
        if index == 0 {
            var x = 1.0
            while wallSeconds() - wall0 < seconds { for _ in 0..<10_000 { x = x * 1.000001 + 1e-9 } }
            if x == 0 { print("") }  // keeps the loop
        } else {
            Thread.sleep(forTimeInterval: seconds)
        }
    }
    _ = try groups.gatherReports(groups.workerIndex.map { WorkerReport(step: 0, loss: 0, tokens: $0) })
    if groups.isCoordinator {
        let cpu = cpuSeconds() - cpu0, wall = wallSeconds() - wall0
        print(String(format: "coordinator waiting for reports: cpu %.3f s over wall %.3f s = %.1f%% of a core", cpu, wall, 100 * cpu / wall))
        check(cpu / wall < maxShare, "coordinator used \(cpu / wall) of a core while waiting, limit \(maxShare)")
    }

    let cpu1 = cpuSeconds(), wall1 = wallSeconds()
    var plan: StepPlan? = nil
    if groups.isCoordinator {
        Thread.sleep(forTimeInterval: seconds / 2)
        plan = StepPlan(step: 1, learningRate: 0.1)
    }
    _ = try groups.broadcastPlan(plan)
    if let index = groups.workerIndex {
        let cpu = cpuSeconds() - cpu1, wall = wallSeconds() - wall1
        print(String(format: "worker %d waiting for a plan: cpu %.3f s over wall %.3f s = %.1f%% of a core", index, cpu, wall, 100 * cpu / wall))
        check(cpu / wall < maxShare, "worker \(index) used \(cpu / wall) of a core waiting for a plan, limit \(maxShare)")
    }
    print("\(role(groups)) of \(groups.workerCount) workers: idle cpu ok")
}

/// Workers start from different parameters and take worker 0's (so the replica check passes); then worker 0
/// hands them to the coordinator (as for a checkpoint) in pieces of `maxCount` bytes, twice: with blocking calls,
/// and started before a barrier the coordinator receives after, as the training handoff overlaps the next step.
func handoff(_ groups: ProcessGroups, count: Int, maxCount: Int) throws {
    let expected = smallIntegers(count: count, seed: 5)
    (groups.world as? MPICommunicator)?.maxCountPerCall = maxCount
    var parameters = [Float](repeating: .nan, count: count)
    if let index = groups.workerIndex, let workers = groups.workers {
        parameters = index == 0 ? expected : smallIntegers(count: count, seed: UInt64(100 + index))
        try parameters.withUnsafeMutableBufferPointer { try workers.broadcast($0, root: 0) }
        try workers.verifyReplicasAgree(checksum: parameters.withUnsafeBufferPointer(parameterChecksum), step: 0)
    }
    let sends = groups.workerIndex == 0, receives = groups.isCoordinator
    try parameters.withUnsafeMutableBytes { bytes in
        if sends { try groups.world.send(bytes.baseAddress!, byteCount: bytes.count, to: ProcessGroups.coordinatorRank, tag: 7) }
        if receives {
            bytes.initializeMemory(as: UInt8.self, repeating: 0xff)
            try groups.world.receive(bytes.baseAddress!, byteCount: bytes.count, from: 1, tag: 7)
        }
    }
    if receives { check(parameters == expected, "coordinator received other parameters than worker 0 holds") }
    var transfers = PendingTransfers()
    try parameters.withUnsafeMutableBytes { bytes in
        if sends {
            try groups.world.startSend(
                bytes.baseAddress!, byteCount: bytes.count, to: ProcessGroups.coordinatorRank, tag: 8, adding: &transfers)
        }
        try groups.world.barrier()
        if receives {
            bytes.initializeMemory(as: UInt8.self, repeating: 0xff)
            try groups.world.receive(bytes.baseAddress!, byteCount: bytes.count, from: 1, tag: 8)
        }
        try groups.world.finish(&transfers)
    }
    if receives { check(parameters == expected, "coordinator received other parameters than worker 0 started sending") }
    try groups.world.barrier()
    print("\(role(groups)) of \(groups.workerCount) workers: handoff ok for \(count) floats")
}

/// Worker 1 kills itself with SIGKILL at step 2 while the others wait in control-plane collectives; mpirun must
/// end the whole job (the test checks the status, the time and the message).
func killedWorker(_ groups: ProcessGroups) throws {
    for step in 0..<1000 {
        var plan: StepPlan? = nil
        if groups.isCoordinator {
            Thread.sleep(forTimeInterval: 0.01)
            plan = StepPlan(step: step, learningRate: 0.1)
        }
        _ = try groups.broadcastPlan(plan)
        if groups.workerIndex == 1 && step == 2 { kill(getpid(), SIGKILL) }
        _ = try groups.gatherReports(groups.workerIndex.map { WorkerReport(step: step, loss: 0, tokens: $0) })
    }
    fail("\(role(groups)): the job outlived a killed worker")
}

/// Buffers of the hang scenario: collectives that timed out are still pending in MPI, so what they point at
/// must outlive them.
nonisolated(unsafe) var hangSmall: [UInt64] = [1]
nonisolated(unsafe) var hangLarge = [Float](repeating: 1, count: 100_000)
nonisolated(unsafe) var hangMessage = [UInt8](repeating: 0, count: 16)

/// Rank 1 never joins: rank 0's small collective (spinning wait), large blocking collective (behind the
/// readiness barrier) and receive (sleeping wait) must each throw `DistributedError.timedOut` after `seconds`
/// (and not much later), naming its phase and rank 1. Rank 0 then ends the job with MPI_Abort (status 3), as
/// the coordinator does on a hang; rank 1 sleeps meanwhile (its parent-process watchdog is not started here).
func hang(seconds: Double) throws {
    let world = try MPICommunicator.world()
    check(world.size == 2, "hang needs exactly 2 ranks")
    world.hangTimeout = seconds
    guard world.rank == 0 else {
        Thread.sleep(forTimeInterval: 10 * seconds + 30)
        fail("rank 1: rank 0 did not end the job")
    }
    func expectTimeout(_ phase: String, policy: WaitPolicy, _ body: () throws -> Void) {
        world.phase = phase
        world.waitPolicy = policy
        let start = wallSeconds()
        do {
            try body()
            fail("rank 0: \(phase) returned without rank 1")
        } catch let error as DistributedError {
            let waited = wallSeconds() - start
            guard case .timedOut(let rank, let named, let reported, let waitingFor) = error, rank == 0, named == phase,
                waitingFor == [1], reported >= seconds
            else { fail("rank 0: \(phase): wrong error \(error)") }
            check(waited < seconds + 2, "rank 0: \(phase) took \(waited) s for a deadline of \(seconds) s")
            print("rank 0 caught: \(error)")
        } catch {
            fail("rank 0: \(phase): not a timeout: \(error)")
        }
    }
    expectTimeout("hang check (small collective)", policy: .blocking) {
        try world.allreduce(&hangSmall, count: 1, op: .max)
    }
    expectTimeout("hang check (large collective)", policy: .blocking) {
        try world.allreduceSum(&hangLarge, count: hangLarge.count)
    }
    expectTimeout("hang check (receive)", policy: .idle) {
        try world.receive(&hangMessage, byteCount: 16, from: 1, tag: 5)
    }
    print("hang check ok: 3 timeouts of \(seconds) s")
    MPIRuntime.abort(code: 3)
}

/// The value `smallIntegers(count:seed:)` gives at `index`, without the array: SplitMix64's state after
/// `index + 1` steps is a closed form, so a check over a large buffer needs no copy of every worker's values.
func smallInteger(seed: UInt64, index: Int) -> Float {
    let state = (seed &* SplitMix64.increment &+ 1) &+ UInt64(index + 1) &* SplitMix64.increment
    return Float(Int(SplitMix64.mix(state) % 33) - 16)
}

/// Gradient averaging bandwidth among the workers (issue 8): (a) the path training takes, `GradientBuckets`
/// over the buffer cut into `bucketCount` buckets started last first (bucketReady + poll each), then
/// `finish(averaging: false)` (training folds the 1 / workers into the optimizer). With `tail` > 0 the last `tail` floats form the last bucket,
/// reduced with the blocking allreduce as training does for the embeddings and `ln_f` (complete only at the
/// end of backward), and the rest is cut into `bucketCount - 1` near-equal buckets (the blocks); (b) one blocking in-place `MPI_Allreduce` sum of the
/// same `count` floats over the workers' communicator. Each is run once to warm up, then `repeats` times; a
/// run's time is the slowest worker's, after a barrier; the figure is the median. Every run's result is
/// checked exactly (small integers, so every sum is exact in Float). Worker 0 prints one JSON line:
/// floats, bytes (4 x floats), and seconds and GB/s (bytes / seconds / 1e9) for both paths, and
/// bucketed_over_raw = bucketed GB/s / raw GB/s. The coordinator waits (sleeping) in a world barrier.
func allreduceBandwidth(_ groups: ProcessGroups, count: Int, bucketCount: Int, repeats: Int, tail: Int) throws {
    check(count >= bucketCount && bucketCount >= 1 && repeats >= 1, "need floats >= buckets >= 1 and repeats >= 1")
    check(tail == 0 || (bucketCount >= 2 && tail <= count - (bucketCount - 1)), "need buckets >= 2 and tail < floats")
    if let index = groups.workerIndex, let workers = groups.workers {
        let n = groups.workerCount
        // Values are recomputed rather than kept: for GPT-2 124M one copy of the buffer is already 0.5 GB.
        func sum(_ i: Int) -> Float { (0..<n).reduce(Float(0)) { $0 + smallInteger(seed: UInt64($1), index: i) } }
        // Near-equal buckets covering the buffer (or its part before the tail), listed last first, as backward
        // produces them; then the tail.
        let body = count - tail, pieces = tail > 0 ? bucketCount - 1 : bucketCount
        let cuts = (0...pieces).map { $0 * body / pieces }
        let ranges = zip(cuts, cuts.dropFirst()).map { $0 ..< $1 }.reversed() + (tail > 0 ? [body ..< count] : [])
        var buffer = [Float](repeating: 0, count: count)

        /// The slowest worker's seconds for `body`, started together after a barrier.
        func timed(_ body: () throws -> Void) throws -> Double {
            try workers.barrier()
            let start = wallSeconds()
            try body()
            var nanoseconds = [UInt64((wallSeconds() - start) * 1e9)]
            try workers.allreduce(&nanoseconds, count: 1, op: .max)
            return Double(nanoseconds[0]) / 1e9
        }

        var bucketedSeconds: [Double] = [], rawSeconds: [Double] = []
        try buffer.withUnsafeMutableBufferPointer { buffer in
            let buckets = try GradientBuckets(communicator: workers, buffer: buffer, ranges: ranges)
            for run in 0...repeats {
                for i in 0..<count { buffer[i] = smallInteger(seed: UInt64(index), index: i) }
                let bucketed = try timed {
                    for bucket in ranges.indices {
                        try buckets.bucketReady(bucket, wait: tail > 0 && bucket == ranges.count - 1)
                        try buckets.poll()
                    }
                    try buckets.finish(averaging: false)
                }
                let wrongSum = (0..<count).filter { buffer[$0] != sum($0) }
                check(wrongSum.isEmpty, "worker \(index) bucketed run \(run): \(wrongSum.count) wrong, first at \(wrongSum.first ?? -1)")

                for i in 0..<count { buffer[i] = smallInteger(seed: UInt64(index), index: i) }
                let raw = try timed { try workers.allreduceSum(buffer.baseAddress!, count: count) }
                let wrongRaw = (0..<count).filter { buffer[$0] != sum($0) }
                check(wrongRaw.isEmpty, "worker \(index) raw run \(run): \(wrongRaw.count) wrong, first at \(wrongRaw.first ?? -1)")
                if run > 0 {  // run 0 warms up
                    bucketedSeconds.append(bucketed)
                    rawSeconds.append(raw)
                }
            }
        }
        func median(_ values: [Double]) -> Double {
            let sorted = values.sorted()
            return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
        }
        if index == 0 {
            let bytes = 4 * count
            let bucketed = median(bucketedSeconds), raw = median(rawSeconds)
            let bucketedRate = Double(bytes) / bucketed / 1e9, rawRate = Double(bytes) / raw / 1e9
            print(String(
                format: "{\"scenario\": \"allreduce-bandwidth\", \"workers\": %ld, \"floats\": %ld, \"bytes\": %ld, "
                    + "\"buckets\": %ld, \"repeats\": %ld, \"bucketed_seconds\": %.6f, \"bucketed_gb_per_s\": %.4f, "
                    + "\"raw_seconds\": %.6f, \"raw_gb_per_s\": %.4f, \"bucketed_over_raw\": %.4f}",
                n, count, bytes, bucketCount, repeats, bucketed, bucketedRate, raw, rawRate, bucketedRate / rawRate))
        }
    }
    try groups.world.barrier()
}

// MARK: - Main

do {
    let arguments = CommandLine.arguments
    let scenario = arguments.count > 1 ? arguments[1] : ""
    let groups = try ProcessGroups.fromMPI(controlWait: arguments.contains("--blocking") ? .blocking : .idle)
    switch scenario {
    case "control": try control(groups, steps: argument(2, default: 5))
    case "buckets": try buckets(groups, count: argument(2, default: 100_000), maxCount: argument(3, default: 4096))
    case "replicas": try replicas(groups)
    case "handoff": try handoff(groups, count: argument(2, default: 10_007), maxCount: argument(3, default: 4096))
    case "kill-worker": try killedWorker(groups)
    case "hang": try hang(seconds: arguments.count > 2 ? Double(arguments[2]) ?? 1 : 1)
    case "idle-cpu":
        let seconds = arguments.count > 2 ? Double(arguments[2]) ?? 1 : 1
        let maxShare = arguments.count > 3 ? Double(arguments[3]) ?? 0.3 : 0.3
        try idleCPU(groups, seconds: seconds, maxShare: maxShare)
    case "allreduce-bandwidth":
        try allreduceBandwidth(
            groups, count: argument(2, default: 1_000_000), bucketCount: argument(3, default: 6), repeats: argument(4, default: 3),
            tail: argument(5, default: 0))
    default:
        fail("unknown scenario '\(scenario)'; use control, buckets, replicas, handoff, idle-cpu, kill-worker, hang or allreduce-bandwidth")
    }
    try MPIRuntime.finalize()
} catch {
    fail("\(error)")
}
