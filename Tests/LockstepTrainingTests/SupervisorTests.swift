import Foundation
import LockstepConfig
import LockstepDistributed
import LockstepLogging
import LockstepTestSupport
import Testing

@testable import LockstepTraining

/// `JobSupervisor` without MPI: attempts are closures, hosts are names a shell script answers for.
@Suite("Job supervisor")
struct SupervisorTests {
    static func config(_ directory: URL, extra: [String] = []) throws -> RunConfig {
        try RunConfig(
            yaml: """
                model: {context_length: 32, layers: 2, heads: 2, channels: 32}
                data: {train: "data/train_*.bin"}
                training: {max_steps: 30, sequence_length: 32, micro_batch_size: 2, global_batch_tokens: 384}
                output: {directory: "\(directory.path)"}
                distributed: {workers: 3}
                """, file: "run.yaml", overrides: extra)
    }

    final class Lines: @unchecked Sendable {
        let lock = NSLock()
        var all: [String] = []
        func add(_ line: String) { lock.withLock { all.append(line) } }
        var text: String { lock.withLock { all.joined(separator: "\n") } }
    }

    @Test func hostfileLinesAndWorkerCounts() throws {
        let hosts = HostfileEntry.parse("# the cluster\nnode1 slots=2\n\n  node2 slots=1 max_slots=4  # spare\nnode3\n")
        #expect(hosts.map(\.host) == ["node1", "node2", "node3"])
        #expect(hosts.map(\.slots) == [2, 1, nil])
        #expect(HostfileEntry.text(Array(hosts.prefix(2))) == "node1 slots=2\nnode2 slots=1 max_slots=4\n")
        #expect(ElasticWorkers.workerSlots(hosts) == 3)
        // 384 tokens a step are 6 micro-batches of 2 × 32: 1, 2, 3 or 6 workers.
        let config = try Self.config(FileManager.default.temporaryDirectory)
        #expect(ElasticWorkers.largestDividing(atMost: 6, config: config) == 6)
        #expect(ElasticWorkers.largestDividing(atMost: 5, config: config) == 3)
        #expect(ElasticWorkers.largestDividing(atMost: 2, config: config) == 2)
        #expect(ElasticWorkers.largestDividing(atMost: 0, config: config) == nil)
    }

    /// Two failures, then a clean end: two restarts, each a console line and a metrics record; the first
    /// attempt keeps the user's --resume, the others resume `auto` only once the run has a checkpoint.
    @Test func restartsUntilTheJobEnds() throws {
        let temporary = try TemporaryDirectory()
        let lines = Lines()
        let supervisor = JobSupervisor(
            config: try Self.config(temporary.url), maxRestarts: 3, hostfile: nil, pause: 0, log: lines.add)
        var attempts: [JobSupervisor.Attempt] = []
        let status = try supervisor.run(resume: nil) { attempt in
            attempts.append(attempt)
            return attempts.count < 3
                ? JobSupervisor.Ending(status: 1, reason: "hang detected: rank 2 did not answer within 4 s (report of step 7)")
                : JobSupervisor.Ending(status: 0, reason: nil)
        }
        #expect(status == 0)
        #expect(attempts.map(\.number) == [0, 1, 2])
        #expect(attempts.map(\.workers) == [3, 3, 3])
        #expect(attempts.allSatisfy { $0.resume == nil }, "no checkpoint: each attempt starts as the first did")
        let restarts = try MetricsLog.read(url: temporary.url.appendingPathComponent("metrics.jsonl"))
            .filter { $0["kind"] == "restart" }
        #expect(restarts.map { $0["attempt"] } == [.int(1), .int(2)])
        #expect(restarts.first?["reason"] == .string("hang detected: rank 2 did not answer within 4 s (report of step 7)"))
        #expect(restarts.first?["exit_status"] == .int(1) && restarts.first?["from_step"] == .int(0))
        #expect(lines.text.contains("restart 2 of 3: resuming from the start with 3 workers"), "\(lines.text)")
        #expect(lines.text.contains("finished after 2 restarts"), "\(lines.text)")
    }

    /// A job that keeps failing: N restarts, then a summary of every attempt and a non-zero status.
    @Test func givesUpAfterMaxRestarts() throws {
        let temporary = try TemporaryDirectory()
        let lines = Lines()
        let supervisor = JobSupervisor(
            config: try Self.config(temporary.url), maxRestarts: 2, hostfile: nil, pause: 0, log: lines.add)
        var count = 0
        let status = try supervisor.run(resume: nil) { _ in
            count += 1
            return JobSupervisor.Ending(status: 137, reason: nil)
        }
        #expect(status == 137)
        #expect(count == 3)
        let text = lines.text
        #expect(text.contains("giving up after 2 restarts (--max-restarts 2)"), "\(text)")
        #expect(text.contains("attempt 3 (3 workers): signal 9 (SIGKILL): the job ended with signal 9 (SIGKILL)"), "\(text)")
        #expect(text.contains("last exit status: 137"), "\(text)")
        let restarts = try MetricsLog.read(url: temporary.url.appendingPathComponent("metrics.jsonl"))
            .filter { $0["kind"] == "restart" }
        #expect(restarts.count == 2)
    }

    /// A stop asked while the job runs (SIGTERM to `lockstep train`) is passed on and never restarted.
    @Test func cleanStopIsNotRestarted() throws {
        let temporary = try TemporaryDirectory()
        let lines = Lines()
        let supervisor = JobSupervisor(
            config: try Self.config(temporary.url), maxRestarts: 3, hostfile: nil, pause: 0, log: lines.add)
        var count = 0
        let status = try supervisor.run(resume: nil) { _ in
            count += 1
            supervisor.requestStop(signal: SIGTERM)
            return JobSupervisor.Ending(status: 1, reason: nil)
        }
        #expect(count == 1)
        #expect(status == 1)
        #expect(lines.text.contains("stopped with exit status 1 on SIGTERM"), "\(lines.text)")
    }

    /// A host that does not answer the probe leaves the job: the relaunch gets a hostfile without it and the
    /// largest worker count that fits the slots left and divides the global batch; too few workers give up.
    @Test func lostHostsLeaveTheJob() throws {
        let temporary = try TemporaryDirectory()
        let hostfile = temporary.url.appendingPathComponent("hosts")
        try "hosta slots=3\nhostb slots=2\nhostc slots=2\n".write(to: hostfile, atomically: true, encoding: .utf8)
        // "launcher HOST true": hostc is gone.
        let probe = HostProbe(launcher: ["/bin/sh", "-c", "test \"$0\" != hostc"], seconds: 5)
        let lines = Lines()
        let supervisor = JobSupervisor(
            config: try Self.config(temporary.url, extra: ["distributed.workers=6"]), maxRestarts: 2,
            hostfile: hostfile, probe: probe, pause: 0, log: lines.add)
        var attempts: [JobSupervisor.Attempt] = []
        let status = try supervisor.run(resume: nil) { attempt in
            attempts.append(attempt)
            return JobSupervisor.Ending(status: attempts.count == 1 ? 1 : 0, reason: nil)
        }
        #expect(status == 0)
        #expect(attempts.map(\.workers) == [6, 3])
        let relaunchHosts = try String(contentsOf: try #require(attempts.last?.hostfile), encoding: .utf8)
        #expect(relaunchHosts == "hosta slots=3\nhostb slots=2\n")
        #expect(lines.text.contains("host hostc did not answer: continuing on hosta, hostb"), "\(lines.text)")
        #expect(lines.text.contains("4 slots left, but training.global_batch_tokens = 384"), "\(lines.text)")
        let restart = try #require(
            try MetricsLog.read(url: temporary.url.appendingPathComponent("metrics.jsonl")).first { $0["kind"] == "restart" })
        #expect(restart["lost_hosts"] == "hostc")

        let few = JobSupervisor(
            config: try Self.config(temporary.url, extra: ["distributed.workers=6", "fault_tolerance.min_workers=4"]),
            maxRestarts: 2, hostfile: hostfile, probe: probe, pause: 0, log: lines.add)
        var count = 0
        let failed = try few.run(resume: nil) { _ in
            count += 1
            return JobSupervisor.Ending(status: 1, reason: nil)
        }
        #expect(failed == 1 && count == 1)
        #expect(lines.text.contains("fewer than fault_tolerance.min_workers = 4"), "\(lines.text)")
    }
}
