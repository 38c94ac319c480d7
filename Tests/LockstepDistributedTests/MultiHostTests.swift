import Foundation
import LockstepTestSupport
import Testing

/// Two "hosts" on this machine: Linux network namespaces joined by a bridge, each with its own hostname, as
/// PLATFORM.md describes. mpirun starts in host A and reaches host B through an rsh agent script that runs
/// commands with `ip netns exec`; all MPI traffic is TCP over a /24 that exists only inside the namespaces.
extension MPIRunTests {
    @Test(.requires(.networkNamespaces)) func controlPlaneAndBucketsAcrossTwoHosts() throws {
        try TestEnvironment.require(.networkNamespaces)
        let prefix = "lsd\(getpid())"
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-hosts")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }

        // Host a is 10.77.0.1, host b 10.77.0.2; the bridge lives in namespace <prefix>s.
        let setup = """
            set -e
            ip netns add \(prefix)s
            ip -n \(prefix)s link add br0 type bridge
            ip -n \(prefix)s link set br0 up
            i=1
            for h in a b; do
              ip netns add \(prefix)$h
              ip -n \(prefix)$h link add eth0 type veth peer name port$h netns \(prefix)s
              ip -n \(prefix)$h addr add 10.77.0.$i/24 dev eth0
              ip -n \(prefix)$h link set lo up
              ip -n \(prefix)$h link set eth0 up
              ip -n \(prefix)s link set port$h master br0
              ip -n \(prefix)s link set port$h up
              i=$((i+1))
            done
            """
        let teardown = "for n in a b s; do ip netns del \(prefix)$n 2>/dev/null; done; true"
        let agent = folder.appendingPathComponent("agent.sh")
        try """
            #!/bin/sh
            # Open MPI's rsh agent: "agent.sh HOST COMMAND..." runs COMMAND like ssh would, in HOST's namespace.
            host=$1; shift
            case "$host" in
              10.77.0.1) h=a ;;
              10.77.0.2) h=b ;;
              *) echo "agent.sh: unknown host $host" >&2; exit 1 ;;
            esac
            exec ip netns exec \(prefix)$h unshare --uts sh -c "hostname \(prefix)-host-$h; $*"
            """.write(to: agent, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: agent.path)

        let created = try shell(setup)
        defer { _ = try? shell(teardown) }
        // Root with iproute2 can make namespaces; failing to here is a real failure, not a skip.
        try #require(created.status == 0, "cannot create network namespaces: \(created.output)")

        let binary = MPIRun.productsDirectory.appendingPathComponent("lockstep-distributed-check").path
        func mpirun(_ arguments: String) throws -> (status: Int32, output: String) {
            try shell("""
                timeout 60 ip netns exec \(prefix)a unshare --uts sh -c 'hostname \(prefix)-host-a; \
                mpirun --allow-run-as-root --oversubscribe --host 10.77.0.1:2,10.77.0.2:2 -np 4 \
                --mca plm_rsh_agent \(agent.path) --mca oob_tcp_if_include 10.77.0.0/24 \
                --mca btl tcp,self --mca btl_tcp_if_include 10.77.0.0/24 --bind-to none \
                -x OPENBLAS_NUM_THREADS=1 \(binary) \(arguments)'
                """)
        }
        let control = try mpirun("control 3")
        #expect(control.status == 0, "mpirun across two hosts failed:\n\(control.output)")
        // Ranks 0-1 on host a, ranks 2-3 (workers 1 and 2) on host b.
        #expect(control.output.contains("coordinator of 3 workers: control plane ok over 3 steps on host \(prefix)-host-a"), "\(control.output)")
        #expect(control.output.contains("worker 2 of 3 workers: control plane ok over 3 steps on host \(prefix)-host-b"), "\(control.output)")
        let buckets = try mpirun("buckets 20011 1000")
        #expect(buckets.status == 0, "mpirun across two hosts failed:\n\(buckets.output)")
        #expect(buckets.output.contains("worker 2 of 3 workers: buckets ok for 20011 floats"), "\(buckets.output)")
    }
}

/// Runs `script` with /bin/sh, without the variables of this process's own MPI job.
private func shell(_ script: String) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/sh")
    process.arguments = ["-c", script]
    var environment = ProcessInfo.processInfo.environment.filter { key, _ in !MPIRun.isJobVariable(key) }
    environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
    environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
    process.environment = environment
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}
