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
    /// - Parameter environment: nil keeps this process's environment.
    public static func spawn(
        _ arguments: [String], environment: [String: String]? = nil, ownProcessGroup: Bool = false
    ) throws -> pid_t {
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
        let result = environmentStrings.map { posix_spawnp(&pid, arguments[0], nil, &attributes, argv, $0) }
            ?? posix_spawnp(&pid, arguments[0], nil, &attributes, argv, environ)
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
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal
    }
}
