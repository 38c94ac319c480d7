import Foundation
import LockstepConfig
import LockstepDistributed

/// One line of an Open MPI hostfile: `node2 slots=8` (other keys are kept as written).
public struct HostfileEntry: Equatable, Sendable {
    public var host: String
    /// `slots=N`, nil when the line does not say.
    public var slots: Int?
    /// The line as written, to write back unchanged.
    public var line: String

    /// The hosts of a hostfile's text, in order; comments (`#`) and blank lines left out.
    public static func parse(_ text: String) -> [HostfileEntry] {
        text.split(separator: "\n").compactMap { raw in
            let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first
                .map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            guard let host = words.first else { return nil }
            let slots = words.dropFirst().first { $0.hasPrefix("slots=") }.flatMap { Int($0.dropFirst("slots=".count)) }
            return HostfileEntry(host: host, slots: slots, line: line)
        }
    }

    /// A hostfile's text for `entries`.
    public static func text(_ entries: [HostfileEntry]) -> String {
        entries.map { $0.line + "\n" }.joined()
    }
}

/// Checks that a host still answers, through the launcher mpirun itself uses to start its daemons there.
public struct HostProbe: Sendable {
    /// The launcher's command line before the host: Open MPI's `plm_rsh_agent` when set in the environment
    /// (`OMPI_MCA_plm_rsh_agent`, e.g. the network-namespace tests' script), else ssh in batch mode.
    public var launcher: [String]
    /// How long one probe may take before its host counts as lost.
    public var seconds: Double

    public init(launcher: [String], seconds: Double = 10) {
        self.launcher = launcher
        self.seconds = seconds
    }

    /// The launcher mpirun would use with this environment (Open MPI's default agent is `ssh : rsh`: the first
    /// one found).
    public static func mpirunLauncher(environment: [String: String] = ProcessInfo.processInfo.environment) -> HostProbe {
        let agents = (environment["OMPI_MCA_plm_rsh_agent"] ?? "ssh : rsh").split(separator: ":")
            .map { $0.split(separator: " ").map(String.init) }.filter { !$0.isEmpty }
        let found = agents.first { words in
            words[0].hasPrefix("/") ? access(words[0], X_OK) == 0 : ProcessLauncher.onPath(words[0]) != nil
        } ?? ["ssh"]
        var launcher = found
        if (found[0] as NSString).lastPathComponent == "ssh" {
            launcher += ["-o", "BatchMode=yes", "-o", "ConnectTimeout=5"]
        }
        return HostProbe(launcher: launcher)
    }

    /// True when `true` runs on `host` within the deadline. This machine's own names are not probed.
    public func isReachable(_ host: String) -> Bool {
        if Self.isThisMachine(host) { return true }
        guard let status = try? ProcessLauncher.run(launcher + [host, "true"], seconds: seconds) else { return false }
        return status == 0
    }

    /// `isReachable` for every host at once.
    public func reachable(_ hosts: [String]) -> [Bool] {
        final class Results: @unchecked Sendable {
            let lock = NSLock()
            var values: [Bool]
            init(_ count: Int) { values = Array(repeating: false, count: count) }
        }
        let results = Results(hosts.count)
        DispatchQueue.concurrentPerform(iterations: hosts.count) { index in
            let reachable = isReachable(hosts[index])
            results.lock.withLock { results.values[index] = reachable }
        }
        return results.values
    }

    static func isThisMachine(_ host: String) -> Bool {
        ["localhost", "127.0.0.1", "::1", ProcessInfo.processInfo.hostName].contains(host)
    }
}

/// How many workers a job can continue on.
public enum ElasticWorkers {
    /// The largest worker count from `limit` down to 1 that the global batch divides into (global_batch_tokens a
    /// multiple of workers × micro_batch_size × sequence_length), or nil when none does.
    public static func largestDividing(atMost limit: Int, config: RunConfig) -> Int? {
        guard limit >= 1 else { return nil }
        return (1...limit).reversed().first { (try? config.accumulationSteps(workers: $0)) != nil }
    }

    /// Worker slots on `hosts`: their slots (1 for a host that does not say) less one for the coordinator.
    public static func workerSlots(_ hosts: [HostfileEntry]) -> Int {
        hosts.reduce(0) { $0 + max($1.slots ?? 1, 0) } - 1
    }
}
