import Foundation
import LockstepTestSupport
import Testing

@testable import LockstepDistributed
@testable import LockstepTraining
import LockstepCheckpoints
import LockstepData
import LockstepLogging

/// The coordinator and its workers as threads of this process (`ProcessGroups.inProcess`): the step protocol
/// and whole training runs through `DistributedRun`, without mpirun. `DistributedTrainingTests` runs the same
/// roles under mpirun.
@Suite("In-process ranks")
struct InProcessRanksTests {
    /// What a worker saw: the plans it ran, and whether it was released.
    struct WorkerLog {
        var plans: [StepPlan] = []
        var released = false
    }

    /// Four steps of plans and reports between a coordinator and two workers, a checkpoint handoff from
    /// worker 0 after step 3, then the release.
    @Test func plansReportsHandoffAndRelease() throws {
        let all = ProcessGroups.inProcess(workers: 2, hangTimeout: 10)
        let plans = (0..<4).map {
            StepPlan(step: $0, learningRate: 1e-3 * Double($0 + 1), checkpoint: $0 == 2, verifyReplicas: $0 == 1)
        }
        func report(worker: Int, step: Int) -> WorkerReport {
            WorkerReport(step: step, loss: Double(worker) + 0.25 * Double(step), tokens: 100 * (worker + 1), gradNorm: 0.5)
        }
        let snapshot = WorkerState(count: 5)
        let results = RankThreads.run(3) { rank -> (reports: [[WorkerReport]], log: WorkerLog) in
            let groups = all[rank]
            var reports: [[WorkerReport]] = []
            var log = WorkerLog()
            if groups.isCoordinator {
                // The handoff's buffers are received after the next plan went out, as `MPIReplicaLink` does.
                var arriving = false
                for plan in plans {
                    groups.setPhase("plan of step \(plan.step + 1)")
                    _ = try groups.broadcastOrder(.step(plan))
                    if arriving { try snapshot.receiveBuffers(over: groups.world, from: 1, momentShards: nil) }
                    reports.append(try groups.gatherReports(nil) ?? [])
                    if plan.checkpoint { try snapshot.receiveCounters(over: groups.world, from: 1) }
                    arriving = plan.checkpoint
                }
                _ = try groups.broadcastOrder(.release)
                return (reports, log)
            }
            // (No #expect on these threads: Swift Testing records issues on the test's own task.)
            let worker = groups.workerIndex ?? -1
            while case .step(let plan) = try groups.broadcastOrder(nil) {
                log.plans.append(plan)
                _ = try groups.gatherReports(report(worker: worker, step: plan.step))
                if plan.checkpoint && worker == 0 {
                    let state = WorkerState(count: 5)
                    for index in 0..<5 { state.parameters[index] = Float(index) * 1.5 }
                    state.optimizerStep = plan.step + 1
                    state.cursor = DataCursor(epoch: 1, position: 42)
                    var sending = PendingTransfers()
                    try state.startSend(over: groups.world, to: ProcessGroups.coordinatorRank, withParameters: true, adding: &sending)
                    try groups.world.finish(&sending)
                }
            }
            log.released = true
            return (reports, log)
        }
        let coordinator = try results[0].get()
        #expect(coordinator.reports == plans.map { plan in [0, 1].map { report(worker: $0, step: plan.step) } })
        #expect(StepSummary(coordinator.reports[3]).loss == (0.75 * 100 + 1.75 * 200) / 300)
        for worker in 1...2 {
            let log = try results[worker].get().log
            #expect(log.plans == plans && log.released, "worker \(worker - 1)")
        }
        #expect(Array(snapshot.parameters) == [0, 1.5, 3, 4.5, 6])
        #expect(snapshot.optimizerStep == 3 && snapshot.cursor == DataCursor(epoch: 1, position: 42))
    }

    /// A prepared corpus and a 12-step config with checkpoints every 6 steps, paths absolute (the test
    /// process's working directory is not the run's).
    static func setUp(_ directory: URL) throws -> URL {
        _ = try SingleProcessTrainingTests.prepareCorpus(in: directory)
        let config = directory.appendingPathComponent("run.yaml")
        try """
            model: {context_length: 32, layers: 2, heads: 2, channels: 32, seed: 5}
            data: {train: "\(directory.path)/data/train_*.bin", validation: "\(directory.path)/data/val_*.bin", seed: 9}
            training: {max_steps: 12, sequence_length: 32, micro_batch_size: 2, global_batch_tokens: 256}
            schedule: {kind: cosine, learning_rate: 2.0e-3, warmup_steps: 3}
            evaluation: {every: 6, max_windows: 8}
            output: {directory: runs/a, log_every: 1, tensorboard: false}
            checkpoint: {every: 6, keep_last: 2}
            distributed: {check_replicas_every: 3}
            fault_tolerance: {hang_timeout_seconds: 30}
            """.write(to: config, atomically: true, encoding: .utf8)
        return config
    }

    /// One run through `DistributedRun.coordinator` and `.worker`, each rank on its own thread, of
    /// `directory/run.yaml` with `overrides` (`key=value`) after the output directory.
    /// - Returns: the coordinator's summary, once every rank has finished (any rank's error is thrown).
    static func train(
        _ directory: URL, workers: Int, output: String, resume: String? = nil, overrides: [String] = []
    ) throws -> RunSummary {
        let all = ProcessGroups.inProcess(workers: workers, hangTimeout: 30)
        let config = directory.appendingPathComponent("run.yaml").path
        let quiet = try #require(FileHandle(forWritingAtPath: "/dev/null"))
        let results = RankThreads.run(workers + 1) { rank -> RunSummary? in
            if rank == ProcessGroups.coordinatorRank {
                return try DistributedRun.coordinator(
                    groups: all[rank], configPath: config,
                    overrides: ["output.directory=\(directory.appendingPathComponent(output).path)"] + overrides, resume: resume,
                    console: ProgressReporter(output: quiet, isTerminal: false), log: { _ in })
            }
            try DistributedRun.worker(groups: all[rank])
            return nil
        }
        for result in results.dropFirst() { _ = try result.get() }
        return try #require(try results[0].get())
    }

    static func trainLosses(_ directory: URL, _ output: String) throws -> [Double] {
        try MetricsLog.read(url: directory.appendingPathComponent("\(output)/metrics.jsonl"))
            .filter { $0["kind"] == .string("train") }.compactMap { $0["loss"]?.doubleValue }
    }

    static func finalModel(_ directory: URL, _ output: String) throws -> Data {
        try Data(contentsOf: directory.appendingPathComponent("\(output)/model/model.safetensors"))
    }

    /// Two in-process workers: the same bits twice; the loss curve of one worker to rounding (the global
    /// batches are the same for any worker count); a resume from the step-6 handoff ends on the uninterrupted
    /// run's parameters, bit for bit.
    @Test func twoWorkersRepeatMatchOneWorkerAndResumeExactly() throws {
        let temporary = try TemporaryDirectory()
        let directory = temporary.url
        _ = try Self.setUp(directory)

        let full = try Self.train(directory, workers: 2, output: "runs/full")
        #expect(full.steps == 12)
        let curve = try Self.trainLosses(directory, "runs/full")
        #expect(curve.count == 12)
        #expect((curve.last ?? .infinity) < (curve.first ?? 0) - 0.3, "loss \(curve)")
        #expect(full.lastValidationLoss != nil)
        let checkpoints = CheckpointDirectory(root: directory.appendingPathComponent("runs/full/checkpoints"))
        #expect(checkpoints.checkpoints().map(\.step) == [12, 6])

        _ = try Self.train(directory, workers: 2, output: "runs/again")
        #expect(try Self.finalModel(directory, "runs/again") == Self.finalModel(directory, "runs/full"))
        #expect(try Self.trainLosses(directory, "runs/again") == curve)

        _ = try Self.train(directory, workers: 1, output: "runs/one")
        let one = try Self.trainLosses(directory, "runs/one")
        #expect(one.count == curve.count)
        let worst = zip(one, curve).map { abs($0 - $1) / abs($1) }.max() ?? .infinity
        #expect(worst < 1e-5, "1 worker against 2: largest relative difference \(worst)")

        // The step-6 handoff of the full run as the point of interruption.
        let resumedRoot = directory.appendingPathComponent("runs/resumed/checkpoints")
        try FileManager.default.createDirectory(at: resumedRoot, withIntermediateDirectories: true)
        try FileManager.default.copyItem(
            at: directory.appendingPathComponent("runs/full/checkpoints/step-0000006"),
            to: resumedRoot.appendingPathComponent("step-0000006"))
        let resumed = try Self.train(directory, workers: 2, output: "runs/resumed", resume: "auto")
        #expect(resumed.steps == 12)
        #expect(try Self.finalModel(directory, "runs/resumed") == Self.finalModel(directory, "runs/full"))
        #expect(try Self.trainLosses(directory, "runs/resumed") == Array(curve.suffix(6)))
    }
}
