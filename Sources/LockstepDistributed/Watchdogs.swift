import Foundation

/// The backstop for the one wait MPI gives no deadline to: a rank inside a blocking MPI call (the large
/// gradient allreduce, `MPI_Comm_split`) whose peer stops half-way through it. The calling thread arms it
/// around the call; a background thread, which makes no MPI call (`MPI_THREAD_FUNNELED`), checks the clock.
/// Past the deadline it says on standard error which rank is stuck in which phase; past twice the deadline
/// plus 5 s (time enough for the coordinator to notice the hang itself and end the job with a better
/// message) it ends this process, which makes mpirun end the job.
public final class HangWatchdog: @unchecked Sendable {
    public static let shared = HangWatchdog()

    public struct Ticket: Equatable, Sendable { let id: UInt64 }

    private struct Watch {
        var id: UInt64
        var rank: Int
        var phase: String
        var seconds: Double
        var start: Double
        var warned: Bool
    }

    private let lock = NSLock()
    private var watch: Watch?
    private var nextID: UInt64 = 0
    private var started = false

    /// Starts watching a call of `rank` in `phase` with a deadline of `seconds`.
    public func arm(rank: Int, phase: String, seconds: Double) -> Ticket {
        lock.lock()
        defer { lock.unlock() }
        nextID &+= 1
        watch = Watch(id: nextID, rank: rank, phase: phase, seconds: seconds, start: monotonicSeconds(), warned: false)
        if !started {
            started = true
            let thread = Thread { [self] in self.loop() }
            thread.name = "lockstep.hang-watchdog"
            thread.start()
        }
        return Ticket(id: nextID)
    }

    /// The call of `ticket` returned.
    public func disarm(_ ticket: Ticket) {
        lock.lock()
        if watch?.id == ticket.id { watch = nil }
        lock.unlock()
    }

    private func loop() {
        while true {
            Thread.sleep(forTimeInterval: 0.2)
            lock.lock()
            guard var current = watch else {
                lock.unlock()
                continue
            }
            let waited = monotonicSeconds() - current.start
            if waited >= current.seconds && !current.warned {
                current.warned = true
                watch = current
                lock.unlock()
                log.error(
                    "rank \(current.rank) timed out after \(waited.formatted(digits: 1)) s waiting in \(current.phase) (inside a blocking MPI call: a peer rank stopped answering)")
                continue
            }
            lock.unlock()
            if waited >= 2 * current.seconds + 5 {
                log.critical(
                    "rank \(current.rank) still stuck in \(current.phase) after \(waited.formatted(digits: 1)) s; ending this rank")
                _exit(1)
            }
        }
    }
}

/// Ends this process when the process that started it (mpirun, or Open MPI's daemon on another host) goes
/// away: mpirun killed with SIGKILL does not take its ranks with it, they would go on as orphans.
public enum ParentWatchdog {
    /// Starts a thread that checks the parent's pid twice a second; when it changes (the parent died and this
    /// process was re-parented), it says so on standard error and exits with status 1. Call once, early.
    public static func start(label: String) {
        let parent = getppid()
        let thread = Thread {
            while true {
                if getppid() != parent {
                    log.critical("\(label): its parent process \(parent) (mpirun) is gone; exiting")
                    _exit(1)
                }
                Thread.sleep(forTimeInterval: 0.5)
            }
        }
        thread.name = "lockstep.parent-watchdog"
        thread.start()
    }
}
