import Foundation
import LockstepDistributed
import LockstepLogging
import LockstepTestSupport
import Testing

@testable import LockstepTraining

/// Elastic continuation (issue 15, part 3): three "hosts" made of network namespaces, as MultiHostTests builds
/// them. A 3-worker run loses host c mid-run (its link goes down, its processes die, its namespace goes), and
/// `lockstep train --max-restarts 2 --hostfile` probes the hosts, leaves c out and finishes on a and b with
/// 2 workers, on the same global data stream: its final loss is the uninterrupted run's to rounding. Both runs
/// shard the optimizer state, so this also checks that workers on several hosts sum their shards through MPI
/// (and say why), and that they end where workers sharing memory on one host do.
extension DistributedTrainingTests {
    @Test(.requires(.networkNamespaces)) func lostHostLeavesTheJobAndTheRunFinishesOnTheOthers() throws {
        try TestEnvironment.require(.networkNamespaces)
        let temporary = try TemporaryDirectory()
        let directory = temporary.url
        _ = try Self.setUp(directory)
        let prefix = "lse\(getpid() % 100000)"
        // Hosts a, b, c are 10.78.0.1-3, joined by a bridge in namespace <prefix>s; the /24 exists only there.
        let setup = """
            set -e
            ip netns add \(prefix)s
            ip -n \(prefix)s link add br0 type bridge
            ip -n \(prefix)s link set br0 up
            i=1
            for h in a b c; do
              ip netns add \(prefix)$h
              ip -n \(prefix)$h link add eth0 type veth peer name port$h netns \(prefix)s
              ip -n \(prefix)$h addr add 10.78.0.$i/24 dev eth0
              ip -n \(prefix)$h link set lo up
              ip -n \(prefix)$h link set eth0 up
              ip -n \(prefix)s link set port$h master br0
              ip -n \(prefix)s link set port$h up
              i=$((i+1))
            done
            """
        // Whatever still runs in a namespace is killed before the namespace goes.
        func remove(_ hosts: String) -> String {
            """
            for n in \(hosts); do
              for p in $(ip netns pids \(prefix)$n 2>/dev/null); do kill -9 $p 2>/dev/null; done
              ip netns del \(prefix)$n 2>/dev/null
            done; true
            """
        }
        let agent = directory.appendingPathComponent("agent.sh")
        try """
            #!/bin/sh
            # Open MPI's rsh agent: "agent.sh HOST COMMAND..." runs COMMAND like ssh would, in HOST's namespace.
            host=$1; shift
            case "$host" in
              10.78.0.1) h=a ;;
              10.78.0.2) h=b ;;
              10.78.0.3) h=c ;;
              *) echo "agent.sh: unknown host $host" >&2; exit 1 ;;
            esac
            exec ip netns exec \(prefix)$h unshare --uts sh -c "hostname \(prefix)-host-$h; $*"
            """.write(to: agent, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: agent.path)
        let created = try elasticShell(setup)
        defer { _ = try? elasticShell(remove("a b c s")) }
        try #require(created.status == 0, "cannot create network namespaces: \(created.output)")
        // Rank 0 (the coordinator) and worker 1 on a, worker 2 on b, worker 3 on c.
        try "10.78.0.1 slots=2\n10.78.0.2 slots=1\n10.78.0.3 slots=1\n"
            .write(to: directory.appendingPathComponent("hosts"), atomically: true, encoding: .utf8)

        // The uninterrupted run, 3 workers on this machine. Both runs shard the optimizer state: here the workers
        // share memory, across the hosts the shards go through MPI.
        let sharded = ["--set", "distributed.shard_optimizer=true"]
        let full = try Self.train(directory, workers: 3, output: "runs/full", extra: sharded)
        #expect(full.output.contains("parameters and gradients in shared memory"), "\(full.output)")
        let expectedLoss = try Self.lastTrainLoss(directory, "runs/full")

        let output = "runs/elastic"
        let log = directory.appendingPathComponent("elastic.log")
        let process = try MPIRun.start(
            ["env", "OMPI_MCA_plm_rsh_agent=\(agent.path)", "OMPI_MCA_oob_tcp_if_include=10.78.0.0/24",
             "OMPI_MCA_btl=tcp,self", "OMPI_MCA_btl_tcp_if_include=10.78.0.0/24",
             "timeout", "-s", "KILL", "300", "ip", "netns", "exec", "\(prefix)a", "unshare", "--uts", "sh", "-c",
             "hostname \(prefix)-host-a; exec \"$@\"", "sh",
             Self.lockstep, "train", "--config", "run.yaml", "--hostfile", "hosts", "--workers", "3",
             "--max-restarts", "2", "--set", "output.directory=\(output)", "--set", "output.log_every=1",
             "--set", "fault_tolerance.hang_timeout_seconds=10"] + sharded,
            directory: directory, log: log)
        defer { Self.cleanUp(Self.descendants(of: process.processIdentifier) + [process.processIdentifier]) }
        // Host c goes once the run is past its second checkpoint (step 10).
        let reached = Self.waitUntil(seconds: 180) {
            Self.records(directory, output, kind: "train").count >= 12 || !process.isRunning
        }
        let before = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        try #require(reached && process.isRunning, "the run did not get to step 12 across the hosts:\n\(before)")
        let lost = try elasticShell("ip -n \(prefix)c link set eth0 down; " + remove("c"))
        #expect(lost.status == 0, "\(lost.output)")

        let seconds = Self.waitForExit(process, seconds: 200)
        let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        #expect(seconds != nil, "still running:\n\(text)")
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "\(text)")
        #expect(text.contains("host 10.78.0.3 did not answer: continuing on 10.78.0.1, 10.78.0.2"), "\(text)")
        #expect(text.contains("with 2 workers"), "\(text)")
        #expect(text.contains("distributed.shared_memory: not used, the workers are on more than one host"), "\(text)")
        let restarts = Self.records(directory, output, kind: "restart")
        #expect(restarts.count == 1 && restarts.first?["lost_hosts"] == "10.78.0.3", "\(restarts)\n\(text)")
        let reason = restarts.first?["reason"]?.jsonText ?? ""
        #expect(reason.contains("lost host 10.78.0.3"), "\(reason)")
        #expect(restarts.first.map { ($0["from_step"]?.doubleValue ?? 0) >= 10 } == true, "\(restarts)")
        let last = Self.records(directory, output, kind: "train").last
        #expect(last?["step"] == .int(30), "\(text)")
        let loss = try Self.lastTrainLoss(directory, output)
        #expect(abs(loss - expectedLoss) < 1e-4, "elastic run ends at loss \(loss), the uninterrupted run at \(expectedLoss)\n\(text)")
        print("elastic run: \(restarts.first?["reason"]?.jsonText ?? "")")
        print(text.split(separator: "\n").filter { $0.hasPrefix("lockstep train:") }.joined(separator: "\n"))
    }
}

/// Runs `script` with /bin/sh, without the variables of this process's own MPI job.
private func elasticShell(_ script: String) throws -> (status: Int32, output: String) {
    let result = try MPIRun.command(["timeout", "-s", "KILL", "60", "/bin/sh", "-c", script], timeout: 90)
    return (result.status, result.output)
}
