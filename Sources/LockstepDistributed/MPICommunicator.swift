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
    /// Asks for `MPI_THREAD_SERIALIZED` and needs at least `MPI_THREAD_FUNNELED`: any thread may compute; MPI is
    /// called from the thread that initialised it (the main thread), and, when MPI gives `SERIALIZED`, also from
    /// the gradient buckets' progress thread, never at the same time as another thread (`BucketRequests`).
    /// - Throws: `MPIError` if MPI fails, or if it cannot give even `MPI_THREAD_FUNNELED`.
    public static func initialize() throws {
        var initialized: Int32 = 0
        try checkMPI(MPI_Initialized(&initialized), "MPI_Initialized")
        if initialized != 0 { return }
        var provided: Int32 = 0
        try checkMPI(MPI_Init_thread(nil, nil, Int32(MPI_THREAD_SERIALIZED), &provided), "MPI_Init_thread")
        if provided < Int32(MPI_THREAD_FUNNELED) {
            throw MPIError(
                call: "MPI_Init_thread", code: -1,
                message: "asked for MPI_THREAD_SERIALIZED (\(MPI_THREAD_SERIALIZED)), got thread level \(provided), "
                    + "below MPI_THREAD_FUNNELED (\(MPI_THREAD_FUNNELED))")
        }
    }

    /// Whether threads other than the main one may call MPI, one at a time (`MPI_THREAD_SERIALIZED` or more).
    public static var allowsCallsFromOtherThreads: Bool {
        var provided: Int32 = 0
        guard isActive, MPI_Query_thread(&provided) == MPI_SUCCESS else { return false }
        return provided >= Int32(MPI_THREAD_SERIALIZED)
    }

    public static func finalize() throws {
        var finalized: Int32 = 0
        try checkMPI(MPI_Finalized(&finalized), "MPI_Finalized")
        if finalized == 0 { try checkMPI(MPI_Finalize(), "MPI_Finalize") }
    }

    /// True between `initialize()` and `finalize()`.
    public static var isActive: Bool {
        var initialized: Int32 = 0, finalized: Int32 = 0
        // Both calls are allowed at any time; one that fails counts as "not active" (no MPI call is safe then).
        guard MPI_Initialized(&initialized) == MPI_SUCCESS, MPI_Finalized(&finalized) == MPI_SUCCESS else { return false }
        return initialized != 0 && finalized == 0
    }

    /// Ends every process of the job with `code` (MPI_Abort on the world). For executables that hit an error
    /// the other ranks cannot learn about otherwise: they would wait forever in the next collective.
    public static func abort(code: Int32) -> Never {
        // MPI_Abort does not return when it works; when it does not, this process still must end.
        _ = MPI_Abort(cmpi_comm_world(), code)
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

    /// Seconds any wait of this communicator may last before it throws `DistributedError.timedOut`, naming
    /// `phase`; nil waits forever (and uses the blocking calls as before). `ProcessGroups.fromMPI` sets it
    /// (`fault_tolerance.hang_timeout_seconds`).
    ///
    /// How each kind of call keeps the deadline: point-to-point calls and small collectives (up to
    /// `smallCollectiveBytes`) use the non-blocking call and test it (spinning under `.blocking`, sleeping
    /// under `.sleeping`), checking the clock. Large collectives under `.blocking` (the gradient allreduce) keep
    /// Open MPI's blocking call, the fastest there is, behind an `MPI_Ibarrier` tested with the deadline: a
    /// rank that never arrives is noticed there. A peer that stops in the middle of the blocking call itself is
    /// caught by `HangWatchdog`, which reports it and ends this process.
    public var hangTimeout: Double?

    /// What the caller is waiting for, named in timeouts: "gradient sync of step 412", "report of step 12".
    public var phase = "an MPI call"

    /// Collectives up to this many bytes go non-blocking when there is a deadline; larger ones under
    /// `.blocking` take the readiness barrier and the blocking call.
    public static let smallCollectiveBytes = 64 * 1024

    /// This process's rank in MPI_COMM_WORLD, and `worldRanks[r]` that of rank `r` here: messages name world ranks.
    public let worldRank: Int
    public let worldRanks: [Int]

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
        // Errors come back as return codes (through `checkMPI`), not as Open MPI's abort of the whole job.
        try checkMPI(MPI_Comm_set_errhandler(comm, cmpi_errors_return()), "MPI_Comm_set_errhandler(MPI_ERRORS_RETURN)")
        var rank: Int32 = 0, size: Int32 = 0, worldRank: Int32 = 0
        try checkMPI(MPI_Comm_rank(comm, &rank), "MPI_Comm_rank")
        try checkMPI(MPI_Comm_size(comm, &size), "MPI_Comm_size")
        try checkMPI(MPI_Comm_rank(cmpi_comm_world(), &worldRank), "MPI_Comm_rank(MPI_COMM_WORLD)")
        self.rank = Int(rank)
        self.size = Int(size)
        self.worldRank = Int(worldRank)
        // Translate this group's ranks into world ranks.
        var group: MPI_Group? = nil, worldGroup: MPI_Group? = nil
        try checkMPI(MPI_Comm_group(comm, &group), "MPI_Comm_group")
        try checkMPI(MPI_Comm_group(cmpi_comm_world(), &worldGroup), "MPI_Comm_group(MPI_COMM_WORLD)")
        var local = (0..<Int32(size)).map { $0 }
        var translated = [Int32](repeating: -1, count: Int(size))
        try checkMPI(
            MPI_Group_translate_ranks(group, size, &local, worldGroup, &translated), "MPI_Group_translate_ranks")
        try checkMPI(MPI_Group_free(&group), "MPI_Group_free")
        try checkMPI(MPI_Group_free(&worldGroup), "MPI_Group_free(world)")
        self.worldRanks = translated.map { Int($0) }
    }

    deinit {
        if ownsComm && MPIRuntime.isActive {
            var handle: MPI_Comm? = comm
            let code = MPI_Comm_free(&handle)
            // A deinit cannot throw; say so rather than drop it.
            if code != MPI_SUCCESS {
                let text = "lockstep: rank \(worldRank): MPI_Comm_free failed with MPI error \(code)\n"
                _ = text.withCString { write(2, $0, strlen($0)) }
            }
        }
    }

    /// Splits this group by `color`; ranks in the new group are ordered by `key`. Collective.
    /// - Parameter color: ranks with the same color form one group; `nil` joins none (`MPI_UNDEFINED`) and
    ///   returns nil.
    public func split(color: Int?, key: Int) throws -> MPICommunicator? {
        var newComm: MPI_Comm? = nil
        // MPI has no non-blocking split: the watchdog keeps its deadline.
        let watch = hangTimeout.map { HangWatchdog.shared.arm(rank: worldRank, phase: "\(phase) (MPI_Comm_split)", seconds: $0) }
        defer { if let watch { HangWatchdog.shared.disarm(watch) } }
        try checkMPI(
            MPI_Comm_split(comm, color.map { Int32($0) } ?? Int32(MPI_UNDEFINED), Int32(key), &newComm), "MPI_Comm_split")
        guard color != nil else { return nil }
        guard let newComm else { throw MPIError(call: "MPI_Comm_split", code: -1, message: "returned no communicator") }
        let child = try MPICommunicator(comm: newComm, ownsComm: true)
        child.hangTimeout = hangTimeout
        return child
    }

    // MARK: - Collectives

    public func allreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {
        try run("MPI_Allreduce(float)", count, .collective(bytesPerElement: 4, root: nil)) { offset, n, request in
            if let request {
                return MPI_Iallreduce(cmpi_in_place(), buffer + offset, n, cmpi_float(), cmpi_op_sum(), comm, request)
            }
            return MPI_Allreduce(cmpi_in_place(), buffer + offset, n, cmpi_float(), cmpi_op_sum(), comm)
        }
    }

    public func allreduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws {
        try run("MPI_Allreduce(double)", count, .collective(bytesPerElement: 8, root: nil)) { offset, n, request in
            if let request {
                return MPI_Iallreduce(cmpi_in_place(), buffer + offset, n, cmpi_double(), cmpi_op_sum(), comm, request)
            }
            return MPI_Allreduce(cmpi_in_place(), buffer + offset, n, cmpi_double(), cmpi_op_sum(), comm)
        }
    }

    public func allreduce(_ buffer: UnsafeMutablePointer<UInt64>, count: Int, op: ReductionOp) throws {
        let mpiOp = Self.mpiOp(op)
        try run("MPI_Allreduce(uint64, \(op))", count, .collective(bytesPerElement: 8, root: nil)) { offset, n, request in
            if let request {
                return MPI_Iallreduce(cmpi_in_place(), buffer + offset, n, cmpi_uint64(), mpiOp, comm, request)
            }
            return MPI_Allreduce(cmpi_in_place(), buffer + offset, n, cmpi_uint64(), mpiOp, comm)
        }
    }

    public func reduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int, root: Int) throws {
        let isRoot = rank == root
        try run("MPI_Reduce(double)", count, .collective(bytesPerElement: 8, root: nil)) { offset, n, request in
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
        try run("MPI_Gather(\(byteCount) bytes)", 1, .collective(bytesPerElement: byteCount * size, root: nil)) { _, _, request in
            if let request {
                return MPI_Igather(send, n, cmpi_byte(), receive, n, cmpi_byte(), Int32(root), comm, request)
            }
            return MPI_Gather(send, n, cmpi_byte(), receive, n, cmpi_byte(), Int32(root), comm)
        }
    }

    public func broadcast(_ buffer: UnsafeMutableRawPointer, byteCount: Int, root: Int) throws {
        try run("MPI_Bcast(bytes)", byteCount, .collective(bytesPerElement: 1, root: root)) { offset, n, request in
            if let request { return MPI_Ibcast(buffer + offset, n, cmpi_byte(), Int32(root), comm, request) }
            return MPI_Bcast(buffer + offset, n, cmpi_byte(), Int32(root), comm)
        }
    }

    /// One in-place `MPI_Reduce` per rank's part, rooted at that rank (pieces past `maxCountPerCall`), rather than
    /// `MPI_Reduce_scatter`: Open MPI's reduce-scatters, the non-blocking one above all (libnbc reduces everything
    /// on rank 0), hold temporaries of the whole buffer on one rank, which is the memory sharding is meant to
    /// save. These reductions keep the traffic of a reduce-scatter (each rank sends the parts it does not own),
    /// spread over the owners. The parts that are not this rank's keep their values (MPI_Reduce's send buffer).
    /// - Throws: `DistributedError.invalidCounts`, or `MPIError`.
    public func reduceScatterSum(_ buffer: UnsafeMutablePointer<Float>, counts: [Int]) throws {
        let offsets = try partOffsets(counts, call: "reduceScatterSum")
        for (owner, count) in counts.enumerated() where count > 0 {
            let part = buffer + offsets[owner]
            let isOwner = rank == owner
            try run("MPI_Reduce(float) to rank \(owner)", count, .collective(bytesPerElement: 4, root: nil)) { offset, n, request in
                // The owner reduces in place; the others only send.
                let send: UnsafeRawPointer = isOwner ? UnsafeRawPointer(cmpi_in_place()) : UnsafeRawPointer(part + offset)
                let receive: UnsafeMutableRawPointer? = isOwner ? UnsafeMutableRawPointer(part + offset) : nil
                if let request {
                    return MPI_Ireduce(send, receive, n, cmpi_float(), cmpi_op_sum(), Int32(owner), comm, request)
                }
                return MPI_Reduce(send, receive, n, cmpi_float(), cmpi_op_sum(), Int32(owner), comm)
            }
        }
    }

    /// `MPI_Allgatherv` in place.
    /// - Throws: `DistributedError.countTooLarge` past `maxCountPerCall` elements in all (MPI's displacements are C
    ///   `int`), `.invalidCounts`.
    public func allgather(_ buffer: UnsafeMutablePointer<Float>, counts: [Int]) throws {
        let parts = try mpiCounts(counts, call: "MPI_Allgatherv")
        let total = counts.reduce(0, +)
        try parts.counts.withUnsafeBufferPointer { mpiCounts in
            try parts.offsets.withUnsafeBufferPointer { offsets in
                try run("MPI_Allgatherv(float, \(total))", 1, .collective(bytesPerElement: total * 4, root: nil)) { _, _, request in
                    if let request {
                        return MPI_Iallgatherv(
                            cmpi_in_place(), 0, cmpi_float(), buffer, mpiCounts.baseAddress, offsets.baseAddress, cmpi_float(),
                            comm, request)
                    }
                    return MPI_Allgatherv(
                        cmpi_in_place(), 0, cmpi_float(), buffer, mpiCounts.baseAddress, offsets.baseAddress, cmpi_float(), comm)
                }
            }
        }
    }

    /// `counts` and their running sums (`partOffsets`) as the C ints MPI's vector collectives take.
    /// - Throws: `DistributedError.invalidCounts`, or `.countTooLarge` when the counts add up to more than
    ///   `maxCountPerCall` (the offsets would not fit).
    private func mpiCounts(_ counts: [Int], call: String) throws -> (counts: [Int32], offsets: [Int32]) {
        let offsets = try partOffsets(counts, call: call)
        let total = counts.reduce(0, +)
        guard total <= min(maxCountPerCall, Int(Int32.max)) else {
            throw DistributedError.countTooLarge(call: call, count: total, limit: maxCountPerCall)
        }
        return (counts.map { Int32($0) }, offsets.map { Int32($0) })
    }

    public func barrier() throws {
        try run("MPI_Barrier", 1, .collective(bytesPerElement: 0, root: nil)) { _, _, request in
            if let request { return MPI_Ibarrier(comm, request) }
            return MPI_Barrier(comm)
        }
    }

    /// Large messages go in pieces of `maxCountPerCall` bytes, all with `tag`; MPI keeps their order.
    public func send(_ buffer: UnsafeRawPointer, byteCount: Int, to destination: Int, tag: Int) throws {
        try run("MPI_Send(\(byteCount) bytes to \(destination))", byteCount, .pointToPoint(peer: destination)) { offset, n, request in
            if let request {
                return MPI_Isend(buffer + offset, n, cmpi_byte(), Int32(destination), Int32(tag), comm, request)
            }
            return MPI_Send(buffer + offset, n, cmpi_byte(), Int32(destination), Int32(tag), comm)
        }
    }

    public func receive(_ buffer: UnsafeMutableRawPointer, byteCount: Int, from source: Int, tag: Int) throws {
        try run("MPI_Recv(\(byteCount) bytes from \(source))", byteCount, .pointToPoint(peer: source)) { offset, n, request in
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

    /// Starts a non-blocking sum of `count` Floats onto rank `root` (`MPI_Ireduce`, in place there; the other
    /// ranks' buffers only send), appending its request to `requests`. `buffer` must stay untouched until the
    /// request completes (`waitAll`); the caller keeps `count` within C `int` (`ShardedGradientBuckets` checks).
    func startReduceSum(
        _ buffer: UnsafeMutablePointer<Float>, count: Int, root: Int, appendingTo requests: inout [MPI_Request?]
    ) throws {
        let isRoot = rank == root
        let send: UnsafeRawPointer = isRoot ? UnsafeRawPointer(cmpi_in_place()) : UnsafeRawPointer(buffer)
        var request: MPI_Request? = cmpi_request_null()
        try checkMPI(
            MPI_Ireduce(send, isRoot ? buffer : nil, Int32(count), cmpi_float(), cmpi_op_sum(), Int32(root), comm, &request),
            "MPI_Ireduce(float, \(count), root \(root))")
        requests.append(request)
    }

    /// Tests `requests` once, which also lets Open MPI progress them. When all are complete they become
    /// `MPI_REQUEST_NULL`; otherwise none changes (MPI_Testall's rule).
    /// - Returns: true when all are complete.
    func testAll(_ requests: inout [MPI_Request?]) throws -> Bool {
        var done: Int32 = 0
        let count = Int32(requests.count)
        try requests.withUnsafeMutableBufferPointer {
            try checkMPI(MPI_Testall(count, $0.baseAddress, &done, cmpi_statuses_ignore()), "MPI_Testall")
        }
        return done != 0
    }

    /// What a wait waits for, to keep the right deadline and name the right ranks when it passes.
    enum Traffic {
        /// Every rank of the group takes part; `root` for rooted collectives (a broadcast's receivers wait for it).
        case collective(bytesPerElement: Int, root: Int?)
        /// One message to or from `peer`; requests of it can be cancelled when the deadline passes.
        case pointToPoint(peer: Int)
    }

    /// Waits for every request in `requests` as `policy` says, then empties it. With `hangTimeout` set, throws
    /// `DistributedError.timedOut` once the wait has lasted that long: point-to-point requests still pending
    /// are cancelled first (so no message lands later in a buffer the caller has let go); the world ranks
    /// named are the peers of the pending requests (`peers[i]` for `requests[i]`), or every other rank of a
    /// collective (the root of a broadcast, for its receivers).
    func waitAll(
        _ requests: inout [MPI_Request?], policy: WaitPolicy, traffic: Traffic, peers: [Int]? = nil,
        _ call: @autoclosure () -> String
    ) throws {
        guard let limit = hangTimeout else {
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
            return
        }
        let started = monotonicSeconds()
        switch policy {
        case .blocking:
            // Spin as MPI_Waitall does, reading the clock every 256 tests (a test is well under a microsecond).
            var tests = 0
            while try !testAll(&requests) {
                tests &+= 1
                if tests & 255 == 0 {
                    let waited = monotonicSeconds() - started
                    if waited >= limit { throw try timedOut(&requests, waited: waited, traffic: traffic, peers: peers) }
                }
            }
        case .sleeping(let initial, let maximum):
            var delay = max(1, initial)
            while try !testAll(&requests) {
                let waited = monotonicSeconds() - started
                if waited >= limit { throw try timedOut(&requests, waited: waited, traffic: traffic, peers: peers) }
                sleepMicroseconds(min(delay, max(1, Int((limit - waited) * 1e6))))
                delay = min(delay * 2, max(maximum, 1))
            }
        }
        requests.removeAll(keepingCapacity: true)
    }

    /// The error for a wait past its deadline; cancels what can be cancelled.
    private func timedOut(
        _ requests: inout [MPI_Request?], waited: Double, traffic: Traffic, peers: [Int]?
    ) throws -> DistributedError {
        var waitingFor: [Int]
        switch traffic {
        case .collective(_, let root):
            waitingFor = root.map { $0 == rank ? Array(0..<size).filter { $0 != rank } : [$0] }
                ?? Array(0..<size).filter { $0 != rank }
        case .pointToPoint(let peer):
            waitingFor = []
            for index in requests.indices where requests[index] != nil && requests[index] != cmpi_request_null() {
                var flag: Int32 = 0
                try checkMPI(MPI_Test(&requests[index], &flag, cmpi_status_ignore()), "MPI_Test")
                if flag != 0 { continue }
                waitingFor.append(peers?[index] ?? peer)
                try checkMPI(MPI_Cancel(&requests[index]), "MPI_Cancel")
                try checkMPI(MPI_Request_free(&requests[index]), "MPI_Request_free")
            }
        }
        let named = Set(waitingFor).sorted().map { worldRanks.indices.contains($0) ? worldRanks[$0] : $0 }
        return .timedOut(rank: worldRank, phase: phase, waitedSeconds: waited, waitingFor: named)
    }

    /// Runs one call over `count` elements in pieces of at most `maxCountPerCall`, waiting as `waitPolicy` and
    /// `hangTimeout` say (see `hangTimeout`): the blocking form of the call (`request` nil) or the non-blocking
    /// one for every piece, then one wait.
    private func run(
        _ call: String, _ count: Int, _ traffic: Traffic,
        _ body: (_ offset: Int, _ n: Int32, _ request: UnsafeMutablePointer<MPI_Request?>?) -> Int32
    ) throws {
        if waitPolicy == .blocking, case .collective(let bytesPerElement, _) = traffic,
            hangTimeout == nil || count * bytesPerElement > Self.smallCollectiveBytes
        {
            var watch: HangWatchdog.Ticket? = nil
            if let limit = hangTimeout {
                // Every rank is here before the blocking call, or the deadline names who is not; then only a
                // rank that stops inside the call is left, for the watchdog.
                var barrier: [MPI_Request?] = [cmpi_request_null()]
                try checkMPI(MPI_Ibarrier(comm, &barrier[0]), "MPI_Ibarrier (before \(call))")
                try waitAll(&barrier, policy: .blocking, traffic: .collective(bytesPerElement: 0, root: nil), call)
                watch = HangWatchdog.shared.arm(rank: worldRank, phase: phase, seconds: limit)
            }
            defer { if let watch { HangWatchdog.shared.disarm(watch) } }
            // At least one call, even for zero elements, so both forms match the same calls on the other ranks.
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
        try waitAll(&requests, policy: waitPolicy, traffic: traffic, call)
    }

    // MARK: - Messages of unknown size

    /// Looks once for a message with `tag` from any rank.
    /// - Returns: its source and size, or nil if none has arrived.
    public func probe(tag: Int) throws -> (source: Int, byteCount: Int)? {
        var flag: Int32 = 0
        var status = MPI_Status()
        try checkMPI(MPI_Iprobe(MPI_ANY_SOURCE, Int32(tag), comm, &flag, &status), "MPI_Iprobe(tag \(tag))")
        guard flag != 0 else { return nil }
        var count: Int32 = 0
        try checkMPI(MPI_Get_count(&status, cmpi_byte(), &count), "MPI_Get_count")
        return (Int(status.MPI_SOURCE), Int(count))
    }

    /// Receives from each of `sources` one message of `byteCount` bytes with `tag`, into `buffers[i]` from
    /// `sources[i]`, all posted at once. On a deadline, the error names exactly the sources not heard from.
    public func receiveFromEach(
        _ buffers: [UnsafeMutableRawPointer], byteCount: Int, from sources: [Int], tag: Int
    ) throws {
        guard byteCount <= maxCountPerCall else {
            throw DistributedError.countTooLarge(call: "MPI_Irecv", count: byteCount, limit: maxCountPerCall)
        }
        var requests: [MPI_Request?] = []
        for (buffer, source) in zip(buffers, sources) {
            var request: MPI_Request? = cmpi_request_null()
            try checkMPI(
                MPI_Irecv(buffer, Int32(byteCount), cmpi_byte(), Int32(source), Int32(tag), comm, &request),
                "MPI_Irecv(\(byteCount) bytes from \(source))")
            requests.append(request)
        }
        try waitAll(
            &requests, policy: waitPolicy, traffic: .pointToPoint(peer: sources.first ?? 0), peers: sources,
            "receive from each of \(sources)")
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

/// Seconds on a clock that only goes forward (CLOCK_MONOTONIC), for deadlines.
public func monotonicSeconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) * 1e-9
}
