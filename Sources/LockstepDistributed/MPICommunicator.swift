import CMPI

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Process-wide MPI state. MPI may be initialised once per process and not again after finalising,
/// so tests running in parallel share one initialisation and never finalise.
public enum MPIRuntime {
    /// Initialises MPI if it is not yet (a process started without mpirun becomes a one-process job).
    ///
    /// Asks for `MPI_THREAD_FUNNELED`: any thread may compute, but only the thread that initialised MPI (the
    /// main thread) calls MPI. Every call in this module, `GradientBuckets.poll()` included, must come from there.
    /// - Throws: `MPIError` if MPI fails, or if it cannot give even that thread level.
    public static func initialize() throws {
        var initialized: Int32 = 0
        try checkMPI(MPI_Initialized(&initialized), "MPI_Initialized")
        if initialized != 0 { return }
        var provided: Int32 = 0
        try checkMPI(MPI_Init_thread(nil, nil, Int32(MPI_THREAD_FUNNELED), &provided), "MPI_Init_thread")
        if provided < Int32(MPI_THREAD_FUNNELED) {
            throw MPIError(
                call: "MPI_Init_thread", code: -1,
                message: "asked for MPI_THREAD_FUNNELED (\(MPI_THREAD_FUNNELED)), got thread level \(provided)")
        }
    }

    public static func finalize() throws {
        var finalized: Int32 = 0
        try checkMPI(MPI_Finalized(&finalized), "MPI_Finalized")
        if finalized == 0 { try checkMPI(MPI_Finalize(), "MPI_Finalize") }
    }

    /// True between `initialize()` and `finalize()`.
    public static var isActive: Bool {
        var initialized: Int32 = 0, finalized: Int32 = 0
        MPI_Initialized(&initialized)
        MPI_Finalized(&finalized)
        return initialized != 0 && finalized == 0
    }

    /// Ends every process of the job with `code` (MPI_Abort on the world). For executables that hit an error
    /// the other ranks cannot learn about otherwise: they would wait forever in the next collective.
    public static func abort(code: Int32) -> Never {
        MPI_Abort(cmpi_comm_world(), code)
        exit(code)
    }
}

/// How a rank waits for a collective to complete.
public enum WaitPolicy: Sendable, Equatable {
    /// Open MPI's blocking call: the lowest latency, but it busy-polls, burning a whole core while it waits.
    case blocking
    /// The non-blocking call, then `MPI_Testall` with a sleep between tests that starts at `initialMicroseconds`
    /// and doubles up to `maximumMicroseconds`. Adds at most about `maximumMicroseconds` of latency.
    case sleeping(initialMicroseconds: Int, maximumMicroseconds: Int)

    /// For ranks that mostly wait: the coordinator, and workers waiting for the next step plan.
    public static let idle = WaitPolicy.sleeping(initialMicroseconds: 50, maximumMicroseconds: 2000)
}

/// A communicator over MPI: the world, or a group split from it.
public final class MPICommunicator: Communicator {
    let comm: MPI_Comm
    /// Split communicators are freed on deinit; the world is not.
    private let ownsComm: Bool
    public let rank: Int
    public let size: Int

    /// How every collective of this communicator waits. `.blocking` for gradient traffic between busy workers,
    /// `.idle` for the control plane.
    public var waitPolicy: WaitPolicy = .blocking

    /// The most elements one MPI call carries; MPI counts are C `int`, so longer buffers go in pieces.
    /// Lowered only by tests, to exercise the chunking without gigabytes of data.
    public var maxCountPerCall: Int = Int(Int32.max)

    /// Every process of the job. Initialises MPI if needed.
    public static func world() throws -> MPICommunicator {
        try MPIRuntime.initialize()
        return try MPICommunicator(comm: cmpi_comm_world(), ownsComm: false)
    }

    init(comm: MPI_Comm, ownsComm: Bool) throws {
        self.comm = comm
        self.ownsComm = ownsComm
        var rank: Int32 = 0, size: Int32 = 0
        try checkMPI(MPI_Comm_rank(comm, &rank), "MPI_Comm_rank")
        try checkMPI(MPI_Comm_size(comm, &size), "MPI_Comm_size")
        self.rank = Int(rank)
        self.size = Int(size)
    }

    deinit {
        if ownsComm && MPIRuntime.isActive {
            var handle: MPI_Comm? = comm
            MPI_Comm_free(&handle)
        }
    }

    /// Splits this group by `color`; ranks in the new group are ordered by `key`. Collective.
    /// - Parameter color: ranks with the same color form one group; `nil` joins none (`MPI_UNDEFINED`) and
    ///   returns nil.
    public func split(color: Int?, key: Int) throws -> MPICommunicator? {
        var newComm: MPI_Comm? = nil
        try checkMPI(
            MPI_Comm_split(comm, color.map { Int32($0) } ?? Int32(MPI_UNDEFINED), Int32(key), &newComm), "MPI_Comm_split")
        guard color != nil else { return nil }
        guard let newComm else { throw MPIError(call: "MPI_Comm_split", code: -1, message: "returned no communicator") }
        return try MPICommunicator(comm: newComm, ownsComm: true)
    }

    // MARK: - Collectives

    public func allreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {
        try run("MPI_Allreduce(float)", count) { offset, n, request in
            if let request {
                return MPI_Iallreduce(cmpi_in_place(), buffer + offset, n, cmpi_float(), cmpi_op_sum(), comm, request)
            }
            return MPI_Allreduce(cmpi_in_place(), buffer + offset, n, cmpi_float(), cmpi_op_sum(), comm)
        }
    }

    public func allreduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws {
        try run("MPI_Allreduce(double)", count) { offset, n, request in
            if let request {
                return MPI_Iallreduce(cmpi_in_place(), buffer + offset, n, cmpi_double(), cmpi_op_sum(), comm, request)
            }
            return MPI_Allreduce(cmpi_in_place(), buffer + offset, n, cmpi_double(), cmpi_op_sum(), comm)
        }
    }

    public func allreduce(_ buffer: UnsafeMutablePointer<UInt64>, count: Int, op: ReductionOp) throws {
        let mpiOp = Self.mpiOp(op)
        try run("MPI_Allreduce(uint64, \(op))", count) { offset, n, request in
            if let request {
                return MPI_Iallreduce(cmpi_in_place(), buffer + offset, n, cmpi_uint64(), mpiOp, comm, request)
            }
            return MPI_Allreduce(cmpi_in_place(), buffer + offset, n, cmpi_uint64(), mpiOp, comm)
        }
    }

    public func reduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int, root: Int) throws {
        let isRoot = rank == root
        try run("MPI_Reduce(double)", count) { offset, n, request in
            // The root reduces in place; the others only send, and their buffers stay as they were.
            let send: UnsafeRawPointer = isRoot ? UnsafeRawPointer(cmpi_in_place()) : UnsafeRawPointer(buffer + offset)
            let receive: UnsafeMutableRawPointer? = isRoot ? UnsafeMutableRawPointer(buffer + offset) : nil
            if let request {
                return MPI_Ireduce(send, receive, n, cmpi_double(), cmpi_op_sum(), Int32(root), comm, request)
            }
            return MPI_Reduce(send, receive, n, cmpi_double(), cmpi_op_sum(), Int32(root), comm)
        }
    }

    /// - Throws: `DistributedError.countTooLarge` when `byteCount` exceeds `maxCountPerCall`: a gather is
    ///   not split into pieces.
    public func gather(_ send: UnsafeRawPointer, byteCount: Int, into receive: UnsafeMutableRawPointer?, root: Int) throws {
        guard byteCount <= maxCountPerCall else {
            throw DistributedError.countTooLarge(call: "MPI_Gather", count: byteCount, limit: maxCountPerCall)
        }
        let n = Int32(byteCount)
        try run("MPI_Gather(\(byteCount) bytes)", 1) { _, _, request in
            if let request {
                return MPI_Igather(send, n, cmpi_byte(), receive, n, cmpi_byte(), Int32(root), comm, request)
            }
            return MPI_Gather(send, n, cmpi_byte(), receive, n, cmpi_byte(), Int32(root), comm)
        }
    }

    public func broadcast(_ buffer: UnsafeMutableRawPointer, byteCount: Int, root: Int) throws {
        try run("MPI_Bcast(bytes)", byteCount) { offset, n, request in
            if let request { return MPI_Ibcast(buffer + offset, n, cmpi_byte(), Int32(root), comm, request) }
            return MPI_Bcast(buffer + offset, n, cmpi_byte(), Int32(root), comm)
        }
    }

    public func barrier() throws {
        try run("MPI_Barrier", 1) { _, _, request in
            if let request { return MPI_Ibarrier(comm, request) }
            return MPI_Barrier(comm)
        }
    }

    /// Large messages go in pieces of `maxCountPerCall` bytes, all with `tag`; MPI keeps their order.
    public func send(_ buffer: UnsafeRawPointer, byteCount: Int, to destination: Int, tag: Int) throws {
        try run("MPI_Send(\(byteCount) bytes to \(destination))", byteCount) { offset, n, request in
            if let request {
                return MPI_Isend(buffer + offset, n, cmpi_byte(), Int32(destination), Int32(tag), comm, request)
            }
            return MPI_Send(buffer + offset, n, cmpi_byte(), Int32(destination), Int32(tag), comm)
        }
    }

    public func receive(_ buffer: UnsafeMutableRawPointer, byteCount: Int, from source: Int, tag: Int) throws {
        try run("MPI_Recv(\(byteCount) bytes from \(source))", byteCount) { offset, n, request in
            if let request {
                return MPI_Irecv(buffer + offset, n, cmpi_byte(), Int32(source), Int32(tag), comm, request)
            }
            return MPI_Recv(buffer + offset, n, cmpi_byte(), Int32(source), Int32(tag), comm, cmpi_status_ignore())
        }
    }

    // MARK: - Non-blocking plumbing

    /// Starts a non-blocking in-place sum of `count` Floats, appending one request per piece to `requests`.
    /// Complete them with `waitAll` (or test them with `testAll`) before touching the buffer.
    func startAllreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int, appendingTo requests: inout [MPI_Request?]) throws {
        var offset = 0
        while offset < count {
            let n = min(count - offset, maxCountPerCall)
            var request: MPI_Request? = cmpi_request_null()
            try checkMPI(
                MPI_Iallreduce(cmpi_in_place(), buffer + offset, Int32(n), cmpi_float(), cmpi_op_sum(), comm, &request),
                "MPI_Iallreduce(float, \(n))")
            requests.append(request)
            offset += n
        }
    }

    /// Tests `requests` once, which also lets Open MPI progress them. Completed ones become `MPI_REQUEST_NULL`.
    /// - Returns: true when all are complete.
    func testAll(_ requests: inout [MPI_Request?]) throws -> Bool {
        var done: Int32 = 0
        let count = Int32(requests.count)
        try requests.withUnsafeMutableBufferPointer {
            try checkMPI(MPI_Testall(count, $0.baseAddress, &done, cmpi_statuses_ignore()), "MPI_Testall")
        }
        return done != 0
    }

    /// Waits for every request in `requests` as `policy` says, then empties it.
    func waitAll(_ requests: inout [MPI_Request?], policy: WaitPolicy, _ call: @autoclosure () -> String) throws {
        switch policy {
        case .blocking:
            let count = Int32(requests.count)
            try requests.withUnsafeMutableBufferPointer {
                try checkMPI(MPI_Waitall(count, $0.baseAddress, cmpi_statuses_ignore()), "MPI_Waitall(\(call()))")
            }
        case .sleeping(let initial, let maximum):
            var delay = max(1, initial)
            while try !testAll(&requests) {
                sleepMicroseconds(delay)
                delay = min(delay * 2, max(maximum, 1))
            }
        }
        requests.removeAll(keepingCapacity: true)
    }

    /// Runs one collective over `count` elements in pieces of at most `maxCountPerCall`: the blocking form when
    /// `waitPolicy` is `.blocking` (`request` nil), else the non-blocking form for every piece, then one wait.
    private func run(
        _ call: String, _ count: Int,
        _ body: (_ offset: Int, _ n: Int32, _ request: UnsafeMutablePointer<MPI_Request?>?) -> Int32
    ) throws {
        // At least one call, even for zero elements, so both forms match the same calls on the other ranks.
        if waitPolicy == .blocking {
            var offset = 0
            repeat {
                let n = min(count - offset, maxCountPerCall)
                try checkMPI(body(offset, Int32(n), nil), "\(call) of \(n)")
                offset += n
            } while offset < count
            return
        }
        var requests: [MPI_Request?] = []
        var offset = 0
        repeat {
            let n = min(count - offset, maxCountPerCall)
            var request: MPI_Request? = cmpi_request_null()
            try checkMPI(body(offset, Int32(n), &request), "\(call) of \(n) (non-blocking)")
            requests.append(request)
            offset += n
        } while offset < count
        try waitAll(&requests, policy: waitPolicy, call)
    }

    private static func mpiOp(_ op: ReductionOp) -> MPI_Op {
        switch op {
        case .sum: cmpi_op_sum()
        case .min: cmpi_op_min()
        case .max: cmpi_op_max()
        }
    }
}

/// Sleeps the calling thread; the wait loops use it between `MPI_Testall` calls.
func sleepMicroseconds(_ microseconds: Int) {
    var request = timespec(tv_sec: microseconds / 1_000_000, tv_nsec: (microseconds % 1_000_000) * 1000)
    var remaining = timespec()
    while nanosleep(&request, &remaining) != 0 && errno == EINTR { request = remaining }
}
