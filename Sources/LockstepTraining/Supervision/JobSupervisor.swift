import Foundation
import LockstepCheckpoints
import LockstepConfig
import LockstepDistributed
import LockstepLogging

/// `lockstep train --max-restarts N`: runs the job (mpirun, or a one-worker `lockstep train` child) and, when it
/// fails, relaunches it from the run's newest valid checkpoint, up to N times.
///
/// - A failure is any non-zero exit that was not asked for: a rank killed, a hang detected, a node lost. A clean
///   stop (SIGINT, SIGTERM or SIGUSR1 to this process: the job finishes the step, saves and exits) is never
///   restarted, and neither is a run that ended by itself.
/// - With a hostfile, every host is probed before a relaunch through the launcher mpirun uses (`HostProbe`);
///   the hosts that do not answer are left out, and the job continues on the largest worker count that the
///   remaining slots hold and the global batch divides into, as long as that is at least
///   `fault_tolerance.min_workers`. The data stream is global, so a continued run sees the same data.
/// - Each restart is one console line and one `{"kind":"restart",...}` record in the run's `metrics.jsonl`;
///   giving up prints every attempt, its cause and the last exit status.
public final class JobSupervisor: @unchecked Sendable {
    /// What one attempt runs with.
    public struct Attempt: Sendable {
        /// 0 for the first launch, k for the k-th restart.
        public var number: Int
        public var workers: Int
        /// The hostfile to give mpirun (the user's, or one without the hosts lost so far).
        public var hostfile: URL?
        /// `--resume` for this attempt: the user's first, then `auto` once the run has a checkpoint of its own.
        public var resume: String?
    }

    /// How an attempt ended.
    public struct Ending: Sendable {
        public var status: Int32
        /// The job's own words for the failure, when it said something (see `OutputRelay`).
        public var reason: String?

        public init(status: Int32, reason: String?) {
            self.status = status
            self.reason = reason
        }
    }

    /// One failed attempt, as the summary and `metrics.jsonl` report it.
    public struct Failure: Sendable {
        public var attempt: Int
        public var workers: Int
        public var status: Int32
        public var reason: String
        public var lostHosts: [String]
        /// The step the next attempt resumes from (0: from the start).
        public var fromStep: Int
    }

    let config: RunConfig
    let maxRestarts: Int
    let hostfile: URL?
    let probe: HostProbe
    let log: (String) -> Void
    /// Seconds between a failure and the relaunch (lets the ports and the session files of the old job go).
    let pause: Double
    private let lock = NSLock()
    private var stopSignal: Int32?
    private var running: pid_t?
    private var signalSources: [DispatchSourceSignal] = []
    public private(set) var failures: [Failure] = []
    /// The restart records written so far.
    private var recorded: [[String: MetricValue]] = []

    public init(
        config: RunConfig, maxRestarts: Int, hostfile: URL?, probe: HostProbe = .mpirunLauncher(), pause: Double = 1,
        log: @escaping (String) -> Void
    ) {
        self.config = config
        self.maxRestarts = maxRestarts
        self.hostfile = hostfile
        self.probe = probe
        self.pause = pause
        self.log = log
    }

    var outputDirectory: URL { URL(fileURLWithPath: config.output.directory) }

    /// Turns SIGINT, SIGTERM and SIGUSR1 into a clean stop: passed on to the running job as SIGUSR1 (the
    /// coordinator finishes the step, saves and releases the workers), and no relaunch after it.
    public func installSignalHandlers() {
        for signalNumber in [SIGINT, SIGTERM, SIGUSR1] {
            signal(signalNumber, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
            source.setEventHandler { [weak self] in self?.requestStop(signal: signalNumber) }
            source.resume()
            signalSources.append(source)
        }
    }

    /// A clean stop, as if a signal had come.
    public func requestStop(signal: Int32) {
        let pid: pid_t? = lock.withLock {
            if stopSignal == nil { stopSignal = signal }
            return running
        }
        log("lockstep train: \(ProcessLauncher.signalName(signal)): stopping after "
            + "the current step and a save" + (pid != nil ? " (passing SIGUSR1 to the job)" : ""))
        if let pid { kill(pid, SIGUSR1) }
    }

    /// The signal that asked for a stop, if one did.
    public var stopRequested: Int32? { lock.withLock { stopSignal } }

    /// Tells the supervisor which process a stop must reach; call right after starting an attempt's job.
    public func started(_ pid: pid_t) {
        let stop: Int32? = lock.withLock {
            running = pid
            return stopSignal
        }
        if stop != nil { kill(pid, SIGUSR1) }
    }

    /// Runs attempts until one ends cleanly, a stop is asked, or the restarts are used up. Returns the exit
    /// status for `lockstep train` (0 after a finished run or a clean stop).
    /// - Parameters:
    ///   - resume: the user's `--resume`, for the first attempt.
    ///   - launch: runs one attempt to its end; it calls `started` with the job's pid.
    public func run(resume: String?, launch: (Attempt) throws -> Ending) throws -> Int32 {
        var attempt = Attempt(number: 0, workers: config.distributed.workers, hostfile: hostfile, resume: resume)
        var hosts = try hostfile.map { HostfileEntry.parse(try String(contentsOf: $0, encoding: .utf8)) } ?? []
        while true {
            let ending = try launch(attempt)
            lock.withLock { running = nil }
            if let signal = stopRequested {
                let how = ending.status == 0 ? "stopped cleanly" : "stopped with \(ProcessLauncher.describe(ending.status))"
                log("lockstep train: \(how) on \(ProcessLauncher.signalName(signal)); "
                    + "continue with --resume auto")
                recordMissingRestarts()
                return ending.status
            }
            if ending.status == 0 {
                if !failures.isEmpty {
                    log("lockstep train: finished after \(failures.count) restart\(failures.count == 1 ? "" : "s")")
                }
                recordMissingRestarts()
                return 0
            }
            var failure = Failure(
                attempt: attempt.number, workers: attempt.workers, status: ending.status,
                reason: ending.reason ?? "the job ended with \(ProcessLauncher.describe(ending.status))",
                lostHosts: [], fromStep: 0)
            // Unsupervised (--max-restarts 0): the job's own messages say it all.
            guard maxRestarts > 0 else { return ending.status }
            log("lockstep train: attempt \(attempt.number + 1) failed (\(ProcessLauncher.describe(ending.status))): "
                + failure.reason)
            guard failures.count < maxRestarts else {
                failures.append(failure)
                giveUp("after \(maxRestarts) restart\(maxRestarts == 1 ? "" : "s") (--max-restarts \(maxRestarts))")
                return ending.status
            }

            // Hosts that are gone leave the job, and the worker count follows what is left.
            if !hosts.isEmpty {
                let answers = probe.reachable(hosts.map(\.host))
                let lost = zip(hosts, answers).filter { !$0.1 }.map(\.0)
                if !lost.isEmpty {
                    failure.lostHosts = lost.map(\.host)
                    failure.reason = "lost host\(lost.count == 1 ? "" : "s") \(failure.lostHosts.joined(separator: ", ")) "
                        + "(no answer to `\(probe.launcher.joined(separator: " ")) HOST true`); the job said: \(failure.reason)"
                    hosts = zip(hosts, answers).filter(\.1).map(\.0)
                    let slots = ElasticWorkers.workerSlots(hosts)
                    let limit = min(attempt.workers, slots)
                    let workers = ElasticWorkers.largestDividing(atMost: limit, config: config)
                    let lostNames = failure.lostHosts.joined(separator: ", ")
                    guard let workers, workers >= config.faultTolerance.minWorkers, !hosts.isEmpty else {
                        failures.append(failure)
                        giveUp(
                            "host\(lost.count == 1 ? "" : "s") \(lostNames) did not answer (probed with "
                                + "`\(probe.launcher.joined(separator: " ")) HOST true`); the hosts left hold "
                                + "\(max(slots, 0)) worker slot\(slots == 1 ? "" : "s")"
                                + (workers.map { ", of which \($0) divide the global batch" } ?? "")
                                + ", fewer than fault_tolerance.min_workers = \(config.faultTolerance.minWorkers)")
                        return ending.status
                    }
                    let remaining = outputDirectory.appendingPathComponent("hostfile.restart-\(attempt.number + 1)")
                    try FileManager.default.createDirectory(at: outputDirectory, withIntermediateDirectories: true)
                    try HostfileEntry.text(hosts).write(to: remaining, atomically: true, encoding: .utf8)
                    var note = "lockstep train: host\(lost.count == 1 ? "" : "s") \(lostNames) did not answer: "
                        + "continuing on \(hosts.map(\.host).joined(separator: ", ")) (\(remaining.path)) with "
                        + "\(workers) worker\(workers == 1 ? "" : "s")"
                    if workers < limit {
                        note += " (\(limit) slot\(limit == 1 ? "" : "s") left, but training.global_batch_tokens = "
                            + "\(config.training.globalBatchTokens) is a multiple of workers × micro_batch_size × "
                            + "sequence_length only for \(workers))"
                    }
                    log(note)
                    attempt.workers = workers
                    attempt.hostfile = remaining
                }
            }

            // From the newest valid checkpoint of this run, if it has one; else as the first attempt began.
            let checkpoints = CheckpointDirectory(root: outputDirectory.appendingPathComponent("checkpoints"))
            if let newest = checkpoints.newestValid(rejected: { self.log("lockstep train: \($0)") }) {
                attempt.resume = "auto"
                failure.fromStep = (try? TrainingCheckpoint.readState(newest).step) ?? 0
            } else if let resume, resume != "auto",
                let state = try? TrainingCheckpoint.readState(URL(fileURLWithPath: resume))
            {
                failure.fromStep = state.step
            }
            failures.append(failure)
            attempt.number += 1
            log("lockstep train: restart \(attempt.number) of \(maxRestarts): resuming from "
                + (failure.fromStep > 0 ? "step \(failure.fromStep)" : "the start")
                + " with \(attempt.workers) worker\(attempt.workers == 1 ? "" : "s")")
            record(failure, number: attempt.number)
            Thread.sleep(forTimeInterval: pause)
            if stopRequested != nil {
                log("lockstep train: stop asked before the relaunch, after the job failed "
                    + "(\(ProcessLauncher.describe(ending.status))); continue with --resume auto")
                recordMissingRestarts()
                return ending.status
            }
        }
    }

    /// The metrics record of restart `number`.
    func restartRecord(_ failure: Failure, number: Int) -> [String: MetricValue] {
        var record: [String: MetricValue] = [
            "kind": "restart", "attempt": .int(number), "reason": .string(failure.reason),
            "exit_status": .int(Int(failure.status)), "from_step": .int(failure.fromStep),
            "workers": .int(failure.workers),
        ]
        if !failure.lostHosts.isEmpty { record["lost_hosts"] = .string(failure.lostHosts.joined(separator: ",")) }
        return record
    }

    private var metricsURL: URL { outputDirectory.appendingPathComponent("metrics.jsonl") }

    private func record(_ failure: Failure, number: Int) {
        let record = restartRecord(failure, number: number)
        recorded.append(record)
        write(record)
    }

    private func write(_ record: [String: MetricValue]) {
        do {
            let metrics = try MetricsLog(url: metricsURL, append: true)
            try metrics.write(record)
            try metrics.close()
        } catch {
            log("lockstep train: cannot record the restart in \(metricsURL.path): \(error)")
        }
    }

    /// A relaunch from the start rewrites `metrics.jsonl`: at the end, put back the restart records it dropped.
    private func recordMissingRestarts() {
        guard !recorded.isEmpty else { return }
        let present = (try? MetricsLog.read(url: metricsURL)) ?? []
        for record in recorded where !present.contains(record) { write(record) }
    }

    private func giveUp(_ why: String) {
        recordMissingRestarts()
        var lines = ["lockstep train: giving up \(why)."]
        for failure in failures {
            var line = "  attempt \(failure.attempt + 1) (\(failure.workers) worker\(failure.workers == 1 ? "" : "s")): "
                + "\(ProcessLauncher.describe(failure.status)): \(failure.reason)"
            if !failure.lostHosts.isEmpty { line += "; lost \(failure.lostHosts.joined(separator: ", "))" }
            lines.append(line)
        }
        lines.append("  last exit status: \(failures.last.map { String($0.status) } ?? "none")")
        lines.append("  the newest checkpoint, if any, is kept: continue by hand with --resume auto")
        log(lines.joined(separator: "\n"))
    }
}
