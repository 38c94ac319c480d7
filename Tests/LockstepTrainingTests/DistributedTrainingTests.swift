import Foundation
import LockstepDistributed
import LockstepTestSupport
import Testing

@testable import LockstepTraining
import LockstepLogging
import LockstepCheckpoints

/// Real multi-process runs: `lockstep train --workers N` starts mpirun with the coordinator and N workers.
@Suite("Distributed training", .serialized)
struct DistributedTrainingTests {
    static let lockstep = MPIRun.productsDirectory.appendingPathComponent("lockstep").path
    static let coordinator = MPIRun.productsDirectory.appendingPathComponent("lockstep-coordinator").path
    static let worker = MPIRun.productsDirectory.appendingPathComponent("lockstep-worker").path

    /// A prepared corpus and a config file for a 30-step run that checkpoints every 5 steps.
    static func setUp(_ directory: URL) throws -> URL {
        _ = try SingleProcessTrainingTests.prepareCorpus(in: directory)
        let config = directory.appendingPathComponent("run.yaml")
        try """
            model: {context_length: 32, layers: 2, heads: 2, channels: 32, seed: 5}
            data: {train: "data/train_*.bin", validation: "data/val_*.bin", seed: 9}
            training: {max_steps: 30, sequence_length: 32, micro_batch_size: 2, global_batch_tokens: 384}
            schedule: {kind: cosine, learning_rate: 2.0e-3, warmup_steps: 3}
            evaluation: {every: 10, max_windows: 24}
            output: {directory: runs/a, log_every: 5}
            checkpoint: {every: 5, keep_last: 2}
            distributed: {check_replicas_every: 5}
            """.write(to: config, atomically: true, encoding: .utf8)
        return config
    }

    static func train(_ directory: URL, workers: Int, output: String, extra: [String] = []) throws -> MPIRun.Result {
        let result = try MPIRun.command(
            [lockstep, "train", "--config", "run.yaml", "--workers", "\(workers)", "--set", "output.directory=\(output)"]
                + extra, directory: directory, timeout: 300)
        #expect(result.status == 0, "lockstep train failed:\n\(result.output)")
        return result
    }

    static func finalModel(_ directory: URL, _ output: String) throws -> Data {
        try Data(contentsOf: directory.appendingPathComponent("\(output)/model/model.safetensors"))
    }

    static func lastTrainLoss(_ directory: URL, _ output: String) throws -> Double {
        let records = try MetricsLog.read(url: directory.appendingPathComponent("\(output)/metrics.jsonl"))
        return try #require(records.last { $0["kind"] == .string("train") }?["loss"]?.doubleValue)
    }

    @Test func twoWorkersTrainResumeExactlyAndAcrossWorkerCounts() throws {
        let temporary = try TemporaryDirectory()
        let directory = temporary.url
        _ = try Self.setUp(directory)

        let full = try Self.train(directory, workers: 2, output: "runs/full")
        #expect(full.output.contains("validation loss"))
        let records = try MetricsLog.read(url: directory.appendingPathComponent("runs/full/metrics.jsonl"))
        let evaluations = records.filter { $0["kind"] == .string("eval") }
        #expect(evaluations.count == 3)
        // Every logged step (5, 10, ...) hands its state over for a checkpoint, and says how long that held it up.
        let stalls = records.filter { $0["kind"] == .string("train") }.map { $0["checkpoint_stall_seconds"]?.doubleValue }
        #expect(stalls.count == 6 && stalls.allSatisfy { ($0 ?? -1) >= 0 && ($0 ?? .infinity) < 60 }, "\(stalls)")
        // Each handoff's buffers travel during the next step, whose workers wait for them before their update:
        // every record after the first holds that wait for the handoff five steps before.
        let waits = records.filter { $0["kind"] == .string("train") }.map { $0["handoff_wait_seconds"]?.doubleValue }
        #expect(waits.first == .some(nil) && waits.dropFirst().allSatisfy { ($0 ?? -1) > 0 && ($0 ?? .infinity) < 60 }, "\(waits)")
        let firstLoss = try #require(records.first?["loss"]?.doubleValue)
        let lastLoss = try Self.lastTrainLoss(directory, "runs/full")
        #expect(lastLoss < firstLoss - 0.5, "loss \(firstLoss) -> \(lastLoss)")
        let checkpoints = CheckpointDirectory(root: directory.appendingPathComponent("runs/full/checkpoints"))
        #expect(checkpoints.checkpoints().map(\.step) == [30, 25])
        let events = try FileManager.default.contentsOfDirectory(atPath: directory.appendingPathComponent("runs/full/tensorboard").path)
        #expect(events.contains { $0.hasPrefix("events.out.tfevents.") })

        // Resume from step 25: with 2 workers byte-identical at the end, with 3 (12 windows a step are
        // 3 workers × 2 micro-steps × 2) the same data stream, so the same loss up to rounding.
        for (workers, output) in [(2, "runs/resume2"), (3, "runs/resume3")] {
            let checkpointRoot = directory.appendingPathComponent("\(output)/checkpoints")
            try FileManager.default.createDirectory(at: checkpointRoot, withIntermediateDirectories: true)
            // Take step 25 of the full run as the point of interruption.
            try FileManager.default.copyItem(
                at: directory.appendingPathComponent("runs/full/checkpoints/step-0000025"),
                to: checkpointRoot.appendingPathComponent("step-0000025"))
            let resumed = try MPIRun.command(
                [Self.lockstep, "train", "--config", "run.yaml", "--workers", "\(workers)", "--resume", "auto",
                 "--set", "output.directory=\(output)"],
                directory: directory, timeout: 300)
            if workers == 3 {
                #expect(resumed.status == 0, "\(resumed.output)")
                let loss = try Self.lastTrainLoss(directory, output)
                #expect(abs(loss - lastLoss) < 1e-4, "3-worker resume ends at loss \(loss), the 2-worker run at \(lastLoss)")
            } else {
                #expect(resumed.status == 0, "\(resumed.output)")
                #expect(try Self.finalModel(directory, output) == Self.finalModel(directory, "runs/full"))
            }
        }
    }

    /// 1 (in one process), 2 and 3 workers see the same global batches, so their loss curves agree to
    /// rounding: 12 windows a step are 6, 3 or 2 micro-steps of 2 windows on each worker.
    @Test func oneTwoAndThreeWorkersGiveTheSameLossCurve() throws {
        let temporary = try TemporaryDirectory()
        let directory = temporary.url
        _ = try Self.setUp(directory)
        var curves: [Int: [Double]] = [:]
        for workers in [1, 2, 3] {
            let output = "runs/w\(workers)"
            _ = try Self.train(
                directory, workers: workers, output: output,
                extra: ["--set", "training.max_steps=12", "--set", "output.log_every=1", "--set", "checkpoint.every=0"])
            curves[workers] = try MetricsLog.read(url: directory.appendingPathComponent("\(output)/metrics.jsonl"))
                .filter { $0["kind"] == .string("train") }.compactMap { $0["loss"]?.doubleValue }
        }
        let reference = try #require(curves[1])
        #expect(reference.count == 12)
        for workers in [2, 3] {
            let curve = try #require(curves[workers])
            #expect(curve.count == reference.count)
            let worst = zip(curve, reference).map { abs($0 - $1) / abs($1) }.max() ?? .infinity
            #expect(worst < 1e-5, "\(workers) workers: largest relative difference \(worst)")
        }
    }

    /// `distributed.progress_thread`: a thread of each worker moves the gradient buckets during backward. The
    /// sums are the same MPI operations, so the model ends byte for byte as with polls between kernels; the
    /// workers say the thread runs (MPI gave `MPI_THREAD_SERIALIZED`).
    @Test func progressThreadTrainsTheSameModelAsPolls() throws {
        let temporary = try TemporaryDirectory()
        let directory = temporary.url
        _ = try Self.setUp(directory)
        let short = ["--set", "training.max_steps=10", "--set", "checkpoint.every=0", "--set", "evaluation.every=0"]
        let polled = try Self.train(directory, workers: 2, output: "runs/polls", extra: short)
        #expect(!polled.output.contains("progress on a thread"), "\(polled.output)")
        let threaded = try Self.train(
            directory, workers: 2, output: "runs/thread", extra: short + ["--set", "distributed.progress_thread=true"])
        #expect(threaded.output.contains("gradient buckets progress on a thread"), "\(threaded.output)")
        #expect(try Self.finalModel(directory, "runs/thread") == Self.finalModel(directory, "runs/polls"))
    }

    /// SIGTERM to mpirun: mpirun passes it on, the coordinator finishes the step, saves and releases the workers.
    @Test func sigtermToMPIRunStopsCleanlyAfterSaving() throws {
        let temporary = try TemporaryDirectory()
        let directory = temporary.url
        _ = try Self.setUp(directory)
        let log = directory.appendingPathComponent("term.log").path
        // Default signal dispositions and an empty mask for mpirun, whatever this test process has.
        let pid = try ProcessLauncher.spawn(
            ["/bin/sh", "-c", "cd \"$0\" && exec \"$@\" > term.log 2>&1", directory.path,
             "mpirun", "--oversubscribe", "--bind-to", "none", "--allow-run-as-root", "-x", "OPENBLAS_NUM_THREADS=1",
             "-np", "1", Self.coordinator, "--config", "run.yaml", "--set", "output.directory=runs/term",
             "--set", "training.max_steps=100000", "--set", "checkpoint.every=0", ":", "-np", "2", Self.worker],
            environment: MPIRun.environment)
        let metrics = directory.appendingPathComponent("runs/term/metrics.jsonl")
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline && ((try? MetricsLog.read(url: metrics).count) ?? 0) < 2 {
            Thread.sleep(forTimeInterval: 0.1)
        }
        kill(pid, SIGTERM)
        var status: Int32 = -1
        let stopDeadline = Date().addingTimeInterval(60)
        while Date() < stopDeadline {
            if waitpid(pid, &status, WNOHANG) == pid { break }
            Thread.sleep(forTimeInterval: 0.1)
        }
        if Date() >= stopDeadline {
            kill(pid, SIGKILL)
            _ = ProcessLauncher.wait(pid)
        }
        let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        #expect(output.contains("(signal)"), "\(output)")
        let checkpoints = CheckpointDirectory(root: directory.appendingPathComponent("runs/term/checkpoints"))
        let saved = try #require(checkpoints.newestValid(), "no checkpoint after SIGTERM:\n\(output)")
        #expect(try TrainingCheckpoint.readState(saved).step > 0)
        #expect(FileManager.default.fileExists(atPath: directory.appendingPathComponent("runs/term/model/model.safetensors").path))
    }

    /// SIGKILL the coordinator or a worker at random moments (during steps or checkpoint writes), resume,
    /// and end byte-identical to the uninterrupted run, ten times over.
    @Test func killedRunsResumeBitIdentical() throws {
        let temporary = try TemporaryDirectory()
        let directory = temporary.url
        _ = try Self.setUp(directory)
        let started = Date()
        _ = try Self.train(directory, workers: 2, output: "runs/full")
        let duration = Date().timeIntervalSince(started)
        let expected = try Self.finalModel(directory, "runs/full")

        var random = TestRandom(seed: 2024)
        var kills = 0
        for trial in 0..<10 {
            let output = "runs/killed\(trial)"
            let process = try MPIRun.start(
                ["mpirun", "--oversubscribe", "--bind-to", "none", "--allow-run-as-root", "-x", "OPENBLAS_NUM_THREADS=1",
                 "-np", "1", Self.coordinator, "--config", "run.yaml", "--set", "output.directory=\(output)",
                 "--set", "distributed.workers=2", ":", "-np", "2", Self.worker],
                directory: directory, log: directory.appendingPathComponent("kill\(trial).log"))
            // Somewhere between mpirun's start-up and the end of the run.
            let delay = duration * (0.1 + 0.75 * Double(random.next() % 1000) / 1000)
            Thread.sleep(forTimeInterval: delay)
            let victims = Self.children(of: process.processIdentifier)
            if let victim = victims.isEmpty ? nil : victims[Int(random.next() % UInt64(victims.count))] {
                kill(victim, SIGKILL)
                kills += 1
            }
            // mpirun ends the job within seconds of a lost rank; now and then its own teardown deadlocks with
            // every rank gone (Open MPI 4.1), and then only SIGKILL ends it.
            if Self.waitForExit(process, seconds: 60) == nil { MPIRun.stop(process) }
            process.waitUntilExit()
            // Resume (maybe from scratch if killed before the first checkpoint) until the run completes.
            let resumed = try MPIRun.command(
                [Self.lockstep, "train", "--config", "run.yaml", "--workers", "2", "--resume", "auto",
                 "--set", "output.directory=\(output)"], directory: directory, timeout: 300)
            #expect(resumed.status == 0, "trial \(trial): \(resumed.output)")
            #expect(try Self.finalModel(directory, output) == expected, "trial \(trial) (killed after \(delay) s)")
            // Resuming a finished run does nothing and exits cleanly.
            if trial == 0 {
                let again = try MPIRun.command(
                    [Self.lockstep, "train", "--config", "run.yaml", "--workers", "2", "--resume", "auto",
                     "--set", "output.directory=\(output)"], directory: directory, timeout: 120)
                #expect(again.status == 0, "\(again.output)")
            }
            try? FileManager.default.removeItem(at: directory.appendingPathComponent(output))
        }
        #expect(kills >= 8, "only \(kills) of 10 runs were still running when the kill came")
    }

    // MARK: - Hangs and orphans (issue 15)

    /// Starts `lockstep train --workers 2` with a deadline of `hangTimeout` seconds and output to `<output>.log`,
    /// and waits until it has logged 3 steps.
    static func startHangRun(_ directory: URL, output: String, hangTimeout: Int = 4) throws -> (Process, URL) {
        let log = directory.appendingPathComponent("\(output.replacingOccurrences(of: "/", with: "-")).log")
        let process = try MPIRun.start(
            [lockstep, "train", "--config", "run.yaml", "--workers", "2", "--set", "output.directory=\(output)",
             "--set", "training.max_steps=100000", "--set", "checkpoint.every=0", "--set", "evaluation.every=0",
             "--set", "output.log_every=1", "--set", "fault_tolerance.hang_timeout_seconds=\(hangTimeout)"],
            directory: directory, log: log)
        let metrics = directory.appendingPathComponent("\(output)/metrics.jsonl")
        let deadline = Date().addingTimeInterval(120)
        while Date() < deadline && process.isRunning && ((try? MetricsLog.read(url: metrics).count) ?? 0) < 3 {
            Thread.sleep(forTimeInterval: 0.1)
        }
        return (process, log)
    }

    /// Waits up to `seconds` for `process` to end; returns the seconds it took, nil if it did not.
    static func waitForExit(_ process: Process, seconds: Double) -> Double? {
        let start = Date()
        while process.isRunning && Date().timeIntervalSince(start) < seconds { Thread.sleep(forTimeInterval: 0.05) }
        return process.isRunning ? nil : Date().timeIntervalSince(start)
    }

    /// Every process below `root`, children first found first.
    static func descendants(of root: Int32) -> [Int32] {
        var found: [Int32] = [], queue = [root]
        while let next = queue.popLast() {
            let children = Self.children(of: next)
            found += children
            queue += children
        }
        return found
    }

    /// The MPI world rank of a rank's process, from its environment.
    static func worldRank(of pid: Int32) -> Int? {
        guard let environment = try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/environ")) else { return nil }
        return environment.split(separator: 0).lazy.map { String(decoding: $0, as: UTF8.self) }
            .first { $0.hasPrefix("OMPI_COMM_WORLD_RANK=") }.flatMap { Int($0.dropFirst("OMPI_COMM_WORLD_RANK=".count)) }
    }

    /// True while `pid` exists and is not a zombie.
    static func isAlive(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return false }
        return stat[stat.index(after: close)...].split(separator: " ").first != "Z"
    }

    /// Continues and kills what is left of a test's job.
    static func cleanUp(_ pids: [Int32]) {
        for pid in pids where isAlive(pid) {
            kill(pid, SIGCONT)
            kill(pid, SIGKILL)
        }
    }

    /// SIGSTOP one worker (world rank 2) of a 2-worker run: the job ends non-zero within the 4 s deadline plus
    /// a few seconds, and the coordinator's message names rank 2 and the phase it waited in.
    @Test func stoppedWorkerIsNamedByTheCoordinator() throws {
        let temporary = try TemporaryDirectory()
        let directory = temporary.url
        _ = try Self.setUp(directory)
        let (process, log) = try Self.startHangRun(directory, output: "runs/stop-worker")
        let job = Self.descendants(of: process.processIdentifier)
        defer { Self.cleanUp(job + [process.processIdentifier]) }
        let victim = try #require(job.first { Self.worldRank(of: $0) == 2 }, "no rank 2 among \(job)")
        kill(victim, SIGSTOP)
        let seconds = Self.waitForExit(process, seconds: 30)
        let output = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        #expect(seconds != nil && seconds! < 4 + 10, "took \(String(describing: seconds)) s:\n\(output)")
        process.waitUntilExit()
        #expect(process.terminationStatus != 0, "\(output)")
        #expect(output.contains("hang detected:") && output.contains("2 did not answer within 4 s (report of step"), "\(output)")
        print(output.split(separator: "\n").filter { $0.contains("hang detected") || $0.contains("timed out") }.joined(separator: "\n"))
    }

    /// SIGSTOP the coordinator: the workers end the job non-zero, naming rank 0 and the plan they waited for.
    @Test func stoppedCoordinatorIsNamedByTheWorkers() throws {
        let temporary = try TemporaryDirectory()
        let directory = temporary.url
        _ = try Self.setUp(directory)
        let (process, log) = try Self.startHangRun(directory, output: "runs/stop-coordinator")
        let job = Self.descendants(of: process.processIdentifier)
        defer { Self.cleanUp(job + [process.processIdentifier]) }
        let victim = try #require(job.first { Self.worldRank(of: $0) == 0 }, "no rank 0 among \(job)")
        kill(victim, SIGSTOP)
        let seconds = Self.waitForExit(process, seconds: 30)
        let output = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        // Waiting for the coordinator's plan, a worker allows it 1.5 × the 4 s deadline (the coordinator gets
        // the extra time to name a silent worker first).
        #expect(seconds != nil && seconds! < 6 + 10, "took \(String(describing: seconds)) s:\n\(output)")
        process.waitUntilExit()
        #expect(process.terminationStatus != 0, "\(output)")
        #expect(output.contains("timed out after 6.") && output.contains("waiting in the plan after step")
            && output.contains("for rank 0"), "\(output)")
        print(output.split(separator: "\n").filter { $0.contains("timed out") }.joined(separator: "\n"))
    }

    /// SIGKILL `lockstep train` itself: mpirun (under `setpriv --pdeathsig KILL`) dies with it and the ranks
    /// leave when their parent goes: nothing of the job is left a few seconds later.
    @Test func killedTrainLeavesNoProcess() throws {
        let temporary = try TemporaryDirectory()
        let directory = temporary.url
        _ = try Self.setUp(directory)
        let (process, log) = try Self.startHangRun(directory, output: "runs/kill-train", hangTimeout: 300)
        let job = Self.descendants(of: process.processIdentifier)
        defer { Self.cleanUp(job) }
        #expect(job.count >= 4, "expected mpirun and 3 ranks, found \(job)")
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline && job.contains(where: Self.isAlive) { Thread.sleep(forTimeInterval: 0.1) }
        let left = job.filter(Self.isAlive)
        let output = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        #expect(left.isEmpty, "still running 10 s after SIGKILL: \(left)\n\(output)")
    }

    /// Process ids whose parent is `parent` (mpirun's ranks), zombies left out.
    static func children(of parent: Int32) -> [Int32] {
        ProcessLauncher.children(of: parent)
    }
}
