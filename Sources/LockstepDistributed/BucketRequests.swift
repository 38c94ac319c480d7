import CMPI
import Foundation

/// The non-blocking requests of a step's gradient buckets, and what moves them while backward computes: the
/// caller's `poll()` between kernels, or a progress thread of this object's own that tests them every
/// `progressIntervalMicroseconds`.
///
/// Why a thread: Open MPI 4.1 advances a non-blocking collective only inside an MPI call of the process, and its
/// TCP transport moves bytes only then. Polls between kernels come only every few milliseconds (a large matrix
/// product is one kernel), too seldom to keep a socket busy; a thread testing every 200 µs does, at a few
/// percent of a core.
///
/// The thread and the caller never call MPI at once (`MPI_THREAD_SERIALIZED`): the thread tests only while it
/// `helps` (from the first bucket started during backward until `handBack()`), and during that time the caller
/// makes MPI calls only through this object, under the same lock. After `handBack()` the caller may call MPI
/// as it likes (the token lookups' exchange, the last buckets, `wait`).
final class BucketRequests: @unchecked Sendable {
    /// Between two tests by the progress thread. Short enough to keep a 10 Gbit/s socket's buffer from running
    /// dry; long enough that the thread costs little CPU.
    static let progressIntervalMicroseconds = 200

    private let mpi: MPICommunicator
    private var requests: [MPI_Request?] = []
    /// Guards `requests`, `helping`, `stopping` and `threadError`, and serialises every MPI call on the requests.
    private let condition = NSCondition()
    private var helping = false
    private var stopping = false
    private var threadError: Error?
    /// Whether a progress thread runs (asked for, and MPI gave `MPI_THREAD_SERIALIZED`).
    let hasThread: Bool

    /// - Parameters:
    ///   - capacity: requests a step may hold, reserved so that steps do not allocate.
    ///   - progressThread: start a progress thread; ignored (polls only) when MPI was initialised below
    ///     `MPI_THREAD_SERIALIZED`.
    init(mpi: MPICommunicator, capacity: Int, progressThread: Bool) {
        self.mpi = mpi
        requests.reserveCapacity(capacity)
        hasThread = progressThread && MPIRuntime.allowsCallsFromOtherThreads
        if hasThread {
            let thread = Thread { [self] in progressLoop() }
            thread.name = "lockstep.mpi-progress"
            thread.start()
        }
    }

    /// Ends the progress thread (it holds this object until then). Call once, when the buckets are done with.
    func stop() {
        condition.lock()
        stopping = true
        helping = false
        condition.signal()
        condition.unlock()
    }

    /// Starts requests: `body` appends them (one MPI call that starts them, under the lock). From then on the
    /// progress thread, if any, tests them until `handBack()`.
    func start(_ body: (inout [MPI_Request?]) throws -> Void) throws {
        condition.lock()
        defer { condition.unlock() }
        try body(&requests)
        if hasThread && !helping && !stopping {
            helping = true
            condition.signal()
        }
    }

    /// Tests the requests once (the caller's progress between kernels); nothing while the thread helps.
    /// - Returns: true when nothing is in flight any more (or the thread is moving them).
    func poll() throws -> Bool {
        condition.lock()
        defer { condition.unlock() }
        if helping || requests.isEmpty { return true }
        return try mpi.testAll(&requests)
    }

    /// Stops the thread's tests: after this the caller makes MPI calls of its own. Rethrows an error the thread met.
    func handBack() throws {
        condition.lock()
        defer { condition.unlock() }
        helping = false
        if let error = threadError {
            threadError = nil
            throw error
        }
    }

    /// Hands back, then waits for every request (blocking, under the communicator's deadline) and empties the list.
    func wait(_ call: @autoclosure () -> String) throws {
        try handBack()
        try mpi.waitAll(&requests, policy: .blocking, traffic: .collective(bytesPerElement: 4, root: nil), call())
    }

    private func progressLoop() {
        condition.lock()
        while !stopping {
            guard helping else {
                condition.wait()
                continue
            }
            do {
                // All complete: nothing left to move until the next start.
                if try mpi.testAll(&requests) { helping = false }
            } catch {
                threadError = error
                helping = false
            }
            condition.unlock()
            sleepMicroseconds(Self.progressIntervalMicroseconds)
            condition.lock()
        }
        condition.unlock()
    }
}
