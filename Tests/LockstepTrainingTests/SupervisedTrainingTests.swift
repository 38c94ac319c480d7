import Foundation
import LockstepCheckpoints
import LockstepDistributed
import LockstepLogging
import LockstepTestSupport
import Testing

@testable import LockstepTraining

/// `lockstep train --max-restarts N` and clean stops on real mpirun runs (issue 15, parts 2 and 4).
extension DistributedTrainingTests {
    /// Waits up to `seconds` for `condition`; false if it never held.
    static func waitUntil(seconds: Double, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition() { return true }
            Thread.sleep(forTimeInterval: 0.05)
        }
        return condition()
    }

    static func records(_ directory: URL, _ output: String, kind: String) -> [[String: MetricValue]] {
        ((try? MetricsLog.read(url: directory.appendingPathComponent("\(output)/metrics.jsonl"))) ?? [])
            .filter { $0["kind"] == .string(kind) }
    }

    /// A rank of `lockstep train`'s current job, by world rank.
    static func rank(_ rank: Int, under pid: Int32) -> Int32? {
        descendants(of: pid).first { worldRank(of: $0) == rank && isAlive($0) }
    }

    /// SIGKILL a worker, then (in the relaunched job) the coordinator, at random moments of a
    /// `lockstep train --workers 2 --max-restarts 3` run: it relaunches by itself each time, records the
    /// restarts, and ends with the parameters of the uninterrupted run, byte for byte.
    @Test func supervisedRunSurvivesKilledWorkerAndCoordinator() throws {
        let temporary = try TemporaryDirectory()
        let directory = temporary.url
        _ = try Self.setUp(directory)
        let started = Date()
        _ = try Self.train(directory, workers: 2, output: "runs/full", extra: ["--set", "output.log_every=1"])
        let duration = Date().timeIntervalSince(started)
        let expected = try Self.finalModel(directory, "runs/full")

        var random = TestRandom(seed: UInt64(Date().timeIntervalSince1970))
        let output = "runs/supervised"
        let log = directory.appendingPathComponent("supervised.log")
        let process = try MPIRun.start(
            [Self.lockstep, "train", "--config", "run.yaml", "--workers", "2", "--max-restarts", "3",
             "--set", "output.directory=\(output)", "--set", "output.log_every=1",
             "--set", "fault_tolerance.hang_timeout_seconds=20"],
            directory: directory, log: log)
        let pid = process.processIdentifier
        defer { Self.cleanUp(Self.descendants(of: pid) + [pid]) }
        var killed: [String] = []
        // Restarts so far, from the console (a restart from step 0 rewrites metrics.jsonl until the end).
        func restartsLogged() -> Int {
            ((try? String(contentsOf: log, encoding: .utf8)) ?? "").components(separatedBy: "lockstep train: restart ").count - 1
        }
        // Kill world rank `victim` once the current job has trained `after` more steps and a random moment.
        for (victim, restartsBefore) in [(1 + Int(random.next() % 2), 0), (0, 1)] {
            let stepsSoFar = Self.records(directory, output, kind: "train").count
            let target = stepsSoFar + 2 + Int(random.next() % 8)
            _ = Self.waitUntil(seconds: 120) {
                restartsLogged() >= restartsBefore
                    && Self.records(directory, output, kind: "train").count >= target || !process.isRunning
            }
            Thread.sleep(forTimeInterval: duration / 30 * Double(random.next() % 1000) / 1000)
            guard process.isRunning, let rank = Self.rank(victim, under: pid) else { break }
            kill(rank, SIGKILL)
            killed.append("rank \(victim) at about step \(Self.records(directory, output, kind: "train").last?["step"]?.doubleValue ?? 0)")
            _ = Self.waitUntil(seconds: 60) { restartsLogged() > restartsBefore || !process.isRunning }
        }
        let seconds = Self.waitForExit(process, seconds: 240)
        let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        #expect(seconds != nil, "still running:\n\(text)")
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "\(text)")
        #expect(killed.count == 2, "killed \(killed)")
        let restarts = Self.records(directory, output, kind: "restart")
        #expect(restarts.count == killed.count, "\(restarts)\n\(text)")
        #expect(restarts.allSatisfy { $0["exit_status"] != .int(0) && $0["reason"] != nil })
        #expect(text.contains("lockstep train: restart 1 of 3: resuming from"), "\(text)")
        #expect(try Self.finalModel(directory, output) == expected, "killed \(killed)\n\(text)")
        print("supervised run: killed \(killed); restarts: \(restarts.map { $0["reason"]?.jsonText ?? "" })")
    }

    /// A hung worker (SIGSTOP) under --max-restarts: the deadline ends the job naming the rank, the supervisor
    /// records that diagnosis as the restart's reason, relaunches, and the run ends byte-identical.
    @Test func supervisedRunRecoversFromAHungWorker() throws {
        let temporary = try TemporaryDirectory()
        let directory = temporary.url
        _ = try Self.setUp(directory)
        _ = try Self.train(directory, workers: 2, output: "runs/full")
        let expected = try Self.finalModel(directory, "runs/full")
        let output = "runs/hung"
        let log = directory.appendingPathComponent("hung.log")
        let process = try MPIRun.start(
            [Self.lockstep, "train", "--config", "run.yaml", "--workers", "2", "--max-restarts", "1",
             "--set", "output.directory=\(output)", "--set", "output.log_every=1",
             "--set", "fault_tolerance.hang_timeout_seconds=4"],
            directory: directory, log: log)
        let pid = process.processIdentifier
        var stopped: [Int32] = []
        defer { Self.cleanUp(stopped + Self.descendants(of: pid) + [pid]) }
        _ = Self.waitUntil(seconds: 120) { Self.records(directory, output, kind: "train").count >= 12 || !process.isRunning }
        let victim = try #require(Self.rank(2, under: pid), "no rank 2")
        kill(victim, SIGSTOP)
        stopped.append(victim)
        let seconds = Self.waitForExit(process, seconds: 150)
        let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        #expect(seconds != nil, "still running:\n\(text)")
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "\(text)")
        #expect(!Self.isAlive(victim), "the stopped rank outlived its job")
        let restarts = Self.records(directory, output, kind: "restart")
        #expect(restarts.count == 1, "\(restarts)\n\(text)")
        let reason = restarts.first?["reason"]?.jsonText ?? ""
        #expect(reason.contains("hang detected") && reason.contains("2 did not answer within 4 s"), "\(reason)\n\(text)")
        #expect(try Self.finalModel(directory, output) == expected, "\(text)")
        print("hung worker: restart reason \(reason)")
    }

    /// One worker, supervised: the training runs in a child `lockstep train`; SIGKILL it mid-run and the
    /// supervisor relaunches it from the newest checkpoint, ending byte-identical to an in-process run.
    @Test func supervisedOneWorkerRunSurvivesItsChildBeingKilled() throws {
        let temporary = try TemporaryDirectory()
        let directory = temporary.url
        _ = try Self.setUp(directory)
        _ = try Self.train(directory, workers: 1, output: "runs/full")
        let expected = try Self.finalModel(directory, "runs/full")
        let output = "runs/one"
        let log = directory.appendingPathComponent("one.log")
        let process = try MPIRun.start(
            [Self.lockstep, "train", "--config", "run.yaml", "--workers", "1", "--max-restarts", "1",
             "--set", "output.directory=\(output)", "--set", "output.log_every=1"],
            directory: directory, log: log)
        let pid = process.processIdentifier
        defer { Self.cleanUp(Self.descendants(of: pid) + [pid]) }
        _ = Self.waitUntil(seconds: 120) { Self.records(directory, output, kind: "train").count >= 12 || !process.isRunning }
        let child = try #require(Self.children(of: pid).first, "no child of lockstep train")
        kill(child, SIGKILL)
        let seconds = Self.waitForExit(process, seconds: 120)
        let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        #expect(seconds != nil, "still running:\n\(text)")
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "\(text)")
        let restarts = Self.records(directory, output, kind: "restart")
        #expect(restarts.count == 1 && restarts.first?["exit_status"] == .int(137), "\(restarts)\n\(text)")
        #expect(try Self.finalModel(directory, output) == expected, "\(text)")
    }

    /// A job that fails every time (its checkpoint does not exist) is launched 1 + N times, then the command
    /// gives up, non-zero, with a summary of the attempts.
    @Test func supervisedRunGivesUpAfterMaxRestarts() throws {
        let temporary = try TemporaryDirectory()
        let directory = temporary.url
        _ = try Self.setUp(directory)
        let result = try MPIRun.command(
            [Self.lockstep, "train", "--config", "run.yaml", "--workers", "2", "--max-restarts", "2",
             "--resume", "runs/none/checkpoints/step-0000005", "--set", "output.directory=runs/failing"],
            directory: directory, timeout: 180)
        #expect(result.status != 0 && result.status != -1, "\(result.output)")
        #expect(result.output.contains("lockstep train: giving up after 2 restarts (--max-restarts 2)"), "\(result.output)")
        #expect(result.output.contains("  attempt 3 (2 workers): exit status"), "\(result.output)")
        #expect(result.output.contains("last exit status:"), "\(result.output)")
        #expect(result.output.contains("step-0000005"), "the cause is named:\n\(result.output)")
        #expect(Self.records(directory, "runs/failing", kind: "restart").count == 2)
    }

    /// Preemption: SIGTERM or SIGUSR1 (Slurm's `--signal`) to `lockstep train` itself finishes the step, saves
    /// and exits 0 without a restart (even with --max-restarts); `--resume auto` then ends bit-identical to an
    /// uninterrupted run.
    @Test func signalledTrainStopsAndResumesBitIdentical() throws {
        let temporary = try TemporaryDirectory()
        let directory = temporary.url
        _ = try Self.setUp(directory)
        _ = try Self.train(directory, workers: 2, output: "runs/full")
        let expected = try Self.finalModel(directory, "runs/full")
        for (signal, name, extra) in [(SIGTERM, "term", [String]()), (SIGUSR1, "usr1", ["--max-restarts", "2"])] {
            let output = "runs/\(name)"
            let log = directory.appendingPathComponent("\(name).log")
            let process = try MPIRun.start(
                [Self.lockstep, "train", "--config", "run.yaml", "--workers", "2", "--set", "output.directory=\(output)",
                 "--set", "output.log_every=1"] + extra,
                directory: directory, log: log)
            let pid = process.processIdentifier
            defer { Self.cleanUp(Self.descendants(of: pid) + [pid]) }
            _ = Self.waitUntil(seconds: 120) { Self.records(directory, output, kind: "train").count >= 8 || !process.isRunning }
            kill(pid, signal)
            let seconds = Self.waitForExit(process, seconds: 60)
            let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
            #expect(seconds != nil, "\(name): still running a minute after the signal:\n\(text)")
            process.waitUntilExit()
            #expect(process.terminationStatus == 0, "\(name):\n\(text)")
            #expect(text.contains("(signal)"), "\(name):\n\(text)")
            #expect(Self.records(directory, output, kind: "restart").isEmpty, "\(name):\n\(text)")
            let checkpoints = CheckpointDirectory(root: directory.appendingPathComponent("\(output)/checkpoints"))
            let saved = try #require(checkpoints.newestValid(), "\(name): no checkpoint:\n\(text)")
            let step = try TrainingCheckpoint.readState(saved).step
            #expect(step >= 8 && step < 30, "\(name): stopped at step \(step)")
            let resumed = try MPIRun.command(
                [Self.lockstep, "train", "--config", "run.yaml", "--workers", "2", "--resume", "auto",
                 "--set", "output.directory=\(output)"], directory: directory, timeout: 300)
            #expect(resumed.status == 0, "\(name): \(resumed.output)")
            #expect(try Self.finalModel(directory, output) == expected, "\(name): stopped at step \(step)")
        }
    }
}
