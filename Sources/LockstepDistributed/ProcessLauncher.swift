import Foundation

/// Starts `mpirun` (or any program) as a child with clean signal handling: default dispositions for the
/// signals mpirun relies on, an empty signal mask, and optionally its own process group.
///
/// Why: ignored and blocked signals survive `exec`. A parent that ignores SIGINT/SIGTERM (as `lockstep train`
/// does, to turn them into a clean stop) or blocks them (some test harnesses) would otherwise hand that on to
/// mpirun, which then could not pass SIGTERM on to the ranks.
public enum ProcessLauncher {
    public struct LaunchError: Error, CustomStringConvertible {
        public var description: String
    }

    /// Spawns `arguments` (the first looked up on PATH); returns the child's pid.
    /// - Parameters:
    ///   - environment: nil keeps this process's environment.
    ///   - standardError: a file descriptor to become the child's standard error (nil: this process's).
    ///   - standardOutput: likewise for standard output.
    public static func spawn(
        _ arguments: [String], environment: [String: String]? = nil, ownProcessGroup: Bool = false,
        standardOutput: Int32? = nil, standardError: Int32? = nil
    ) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if let standardOutput { posix_spawn_file_actions_adddup2(&actions, standardOutput, 1) }
        if let standardError { posix_spawn_file_actions_adddup2(&actions, standardError, 2) }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var flags = Int32(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK)
        if ownProcessGroup {
            flags |= Int32(POSIX_SPAWN_SETPGROUP)
            posix_spawnattr_setpgroup(&attributes, 0)
        }
        posix_spawnattr_setflags(&attributes, Int16(flags))
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGINT, SIGTERM, SIGUSR1, SIGUSR2, SIGHUP, SIGPIPE, SIGCHLD] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var emptyMask = sigset_t()
        sigemptyset(&emptyMask)
        posix_spawnattr_setsigmask(&attributes, &emptyMask)

        let argv = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let environmentStrings = environment.map { $0.map { strdup("\($0.key)=\($0.value)") } + [nil] }
        defer { environmentStrings?.forEach { free($0) } }
        var pid: pid_t = 0
        let result = environmentStrings.map { posix_spawnp(&pid, arguments[0], &actions, &attributes, argv, $0) }
            ?? posix_spawnp(&pid, arguments[0], &actions, &attributes, argv, environ)
        guard result == 0 else {
            throw LaunchError(description: "cannot start \(arguments[0]): \(String(cString: strerror(result)))")
        }
        return pid
    }

    /// The full path of executable `name` in a directory of PATH, or nil.
    public static func onPath(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        return path.split(separator: ":").map { "\($0)/\(name)" }.first { access($0, X_OK) == 0 }
    }

    /// Waits for `pid` and returns its exit status (128 + signal number when a signal ended it).
    public static func wait(_ pid: pid_t) -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        return exitStatus(status)
    }

    /// Waits up to `seconds` for `pid`; its exit status as `wait` gives it, or nil if it is still running
    /// (it is then left running: the caller decides).
    public static func wait(_ pid: pid_t, seconds: Double) -> Int32? {
        let deadline = Date().addingTimeInterval(seconds)
        var status: Int32 = 0
        while true {
            let result = waitpid(pid, &status, WNOHANG)
            if result == pid { return exitStatus(status) }
            if result == -1 && errno != EINTR { return nil }
            if Date() >= deadline { return nil }
            usleep(20_000)
        }
    }

    /// Runs `arguments` to the end, at most `seconds`: its exit status, or nil when it did not end in time (it
    /// is then killed, with its process group when it has one of its own).
    public static func run(_ arguments: [String], seconds: Double, quiet: Bool = true) throws -> Int32? {
        let null = quiet ? open("/dev/null", O_WRONLY | O_CLOEXEC) : -1
        defer { if null >= 0 { close(null) } }
        let pid = try spawn(
            arguments, ownProcessGroup: true, standardOutput: null >= 0 ? null : nil,
            standardError: null >= 0 ? null : nil)
        if let status = wait(pid, seconds: seconds) { return status }
        kill(-pid, SIGKILL)
        kill(pid, SIGKILL)
        _ = wait(pid)
        return nil
    }

    /// Waits for a job's launcher (mpirun) to end and returns its exit status. Every second it looks at the
    /// launcher's children (its local ranks, its remote launchers); a launcher that has had none for
    /// `childlessGrace` seconds yet has not exited is stuck in its own teardown (Open MPI 4.1 now and then is,
    /// after losing a rank): it is killed with its process group, and `stuck` is told.
    public static func waitForJob(_ pid: pid_t, childlessGrace: Double, stuck: (String) -> Void) -> Int32 {
        var childlessSince: Date? = nil
        var lastLook = Date.distantPast
        while true {
            if let status = wait(pid, seconds: 0.2) { return status }
            guard Date().timeIntervalSince(lastLook) >= 1 else { continue }
            lastLook = Date()
            if !children(of: pid).isEmpty {
                childlessSince = nil
            } else if let since = childlessSince {
                if Date().timeIntervalSince(since) >= childlessGrace {
                    stuck("the job's launcher (pid \(pid)) has had no ranks for \(Int(childlessGrace)) s but has not "
                        + "exited: ending it with SIGKILL")
                    kill(-pid, SIGKILL)
                    kill(pid, SIGKILL)
                    return wait(pid)
                }
            } else {
                childlessSince = Date()
            }
        }
    }

    /// The processes whose parent is `parent`.
    public static func children(of parent: pid_t) -> [pid_t] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { Int32($0) }.filter { pid in
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { return false }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 1 && Int32(fields[1]) == parent && fields[0] != "Z"
        }
    }

    /// "exit status 3", "signal 9 (SIGKILL)": an exit status as `wait` gives it, in words.
    public static func describe(_ status: Int32) -> String {
        guard status > 128 else { return "exit status \(status)" }
        return "signal \(status - 128) (\(signalName(status - 128)))"
    }

    /// "SIGTERM", or "signal 40" for one without a usual name.
    public static func signalName(_ signal: Int32) -> String {
        let names: [Int32: String] = [
            SIGKILL: "SIGKILL", SIGTERM: "SIGTERM", SIGINT: "SIGINT", SIGSEGV: "SIGSEGV", SIGABRT: "SIGABRT",
            SIGBUS: "SIGBUS", SIGUSR1: "SIGUSR1", SIGUSR2: "SIGUSR2", SIGHUP: "SIGHUP", SIGPIPE: "SIGPIPE",
            SIGILL: "SIGILL", SIGFPE: "SIGFPE", SIGQUIT: "SIGQUIT",
        ]
        return names[signal] ?? "signal \(signal)"
    }

    private static func exitStatus(_ status: Int32) -> Int32 {
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal
    }
}
