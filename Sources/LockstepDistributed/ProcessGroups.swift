import Foundation

/// The roles of a Lockstep job and the communicators between them.
///
/// With mpirun, world rank 0 is the coordinator and world ranks 1...N are the workers; the workers split off
/// their own communicator for gradient traffic, so the coordinator never slows the allreduce. The world
/// communicator (the control plane: step plans and reports) waits by sleeping (`WaitPolicy.idle`), so an idle
/// coordinator does not burn a core; the workers' communicator blocks, for the lowest latency.
///
/// A job of one process (started without mpirun, or `-np 1`) plays both roles: it is the coordinator and
/// worker 0 of one worker, and every communicator is a `LocalCommunicator`.
///
/// `inProcess(workers:)` builds the same roles as threads of one process (`InProcessGroup`s): one
/// `ProcessGroups` per world rank, for tests of the coordinator/worker exchange without mpirun.
public final class ProcessGroups {
    /// The world rank of the coordinator.
    public static let coordinatorRank = 0

    /// Every process: the coordinator and the workers. Control-plane collectives only.
    public let world: any Communicator
    /// The workers alone, for gradients, replica checks and agreement on skips; nil on the coordinator.
    /// Rank `r` here is worker index `r`.
    public let workers: (any Communicator)?
    /// True on world rank 0, and in a one-process job.
    public let isCoordinator: Bool
    /// This process's index among the workers, `0 ..< workerCount`; nil on the coordinator of a job of several.
    public let workerIndex: Int?
    /// The number of workers (world size minus one, or 1 in a one-process job).
    public let workerCount: Int

    /// True when this process holds a model replica.
    public var isWorker: Bool { workerIndex != nil }
    /// True when the coordinator and the only worker are this one process.
    public var isSingleProcess: Bool { world.size == 1 }

    init(world: any Communicator, workers: (any Communicator)?, isCoordinator: Bool, workerIndex: Int?, workerCount: Int) {
        self.world = world
        self.workers = workers
        self.isCoordinator = isCoordinator
        self.workerIndex = workerIndex
        self.workerCount = workerCount
    }

    /// One process in both roles, over `LocalCommunicator`s; needs no MPI.
    public static func singleProcess() -> ProcessGroups {
        ProcessGroups(world: LocalCommunicator(), workers: LocalCommunicator(), isCoordinator: true, workerIndex: 0, workerCount: 1)
    }

    /// The roles of a job of `workers` workers played by threads of this process: element `r` is world rank
    /// `r`'s (0 the coordinator, 1...workers the workers, each with its end of the workers' own group, whose
    /// ranks errors name by world rank). Each must be used from its own thread. Even one worker gives two
    /// ranks (not `singleProcess()`), so the point-to-point control plane is what runs.
    /// - Parameter hangTimeout: the deadline of every wait, in seconds, until `setHangTimeout` changes it.
    /// - Precondition: `workers >= 1`.
    public static func inProcess(workers: Int, hangTimeout: Double = InProcessGroup.defaultHangTimeout) -> [ProcessGroups] {
        precondition(workers >= 1, "a job needs at least one worker")
        let world = InProcessGroup(size: workers + 1, hangTimeout: hangTimeout)
        let workerGroup = InProcessGroup(size: workers, worldRanks: Array(1...workers), hangTimeout: hangTimeout)
        return world.communicators.map { end in
            let isCoordinator = end.rank == coordinatorRank
            let workerEnd = isCoordinator ? nil : workerGroup.communicators[end.rank - 1]
            let groups = ProcessGroups(
                world: end, workers: workerEnd, isCoordinator: isCoordinator, workerIndex: workerEnd?.rank,
                workerCount: workers)
            groups.setPhase("start-up")
            return groups
        }
    }

    /// The roles of this process in the MPI job it was started in; initialises MPI if needed. Collective over
    /// MPI_COMM_WORLD (it splits off the workers' communicator), so every rank calls it at startup.
    /// A world of one process gives `singleProcess()`.
    /// - Parameters:
    ///   - controlWait: how world collectives wait; `.idle` keeps waiting ranks off the CPU.
    ///   - hangTimeout: the deadline of every wait on another rank, until `setHangTimeout` changes it; nil
    ///     takes `LOCKSTEP_HANG_TIMEOUT_SECONDS` from the environment (`lockstep train` sets it from the
    ///     config, so that workers keep it before the config reaches them) or else `defaultHangTimeout`.
    public static func fromMPI(controlWait: WaitPolicy = .idle, hangTimeout: Double? = nil) throws -> ProcessGroups {
        let world = try MPICommunicator.world()
        if world.size == 1 { return singleProcess() }
        world.waitPolicy = controlWait
        world.hangTimeout = hangTimeout ?? environmentHangTimeout ?? defaultHangTimeout
        world.phase = "start-up"
        let isCoordinator = world.rank == coordinatorRank
        // The coordinator joins no group; the workers keep their world order.
        let workers = try world.split(color: isCoordinator ? nil : 1, key: world.rank)
        workers?.waitPolicy = .blocking
        workers?.phase = "start-up"
        return ProcessGroups(
            world: world, workers: workers, isCoordinator: isCoordinator,
            workerIndex: workers?.rank, workerCount: world.size - 1)
    }

    /// The deadline of waits on other ranks when neither the config nor the environment gives one (seconds).
    public static let defaultHangTimeout = 300.0

    static var environmentHangTimeout: Double? {
        ProcessInfo.processInfo.environment["LOCKSTEP_HANG_TIMEOUT_SECONDS"].flatMap(Double.init).flatMap { $0 > 0 ? $0 : nil }
    }

    /// The deadline of every wait on another rank from now on (`fault_tolerance.hang_timeout_seconds`).
    public func setHangTimeout(_ seconds: Double) {
        world.hangTimeout = seconds
        workers?.hangTimeout = seconds
    }

    /// The deadline in force; nil in a one-process job (nothing to wait for).
    public var hangTimeout: Double? { isSingleProcess ? nil : world.hangTimeout }

    /// Names what the next waits are for, in timeouts: "gradient sync of step 12". Sets both communicators.
    public func setPhase(_ phase: String) {
        world.phase = phase
        workers?.phase = phase
    }

    /// Runs `body` with the world's waits spinning instead of sleeping between tests: for a transfer both ends
    /// are about to make (the checkpoint handoff), where each sleep of the idle policy, up to 2 ms a message,
    /// would hold the step up.
    public func spinning<T>(_ body: () throws -> T) rethrows -> T {
        guard let mpi = world as? MPICommunicator else { return try body() }
        let policy = mpi.waitPolicy
        mpi.waitPolicy = .blocking
        defer { mpi.waitPolicy = policy }
        return try body()
    }

    /// This process's world rank (0 in a one-process job).
    public var worldRank: Int { world.rank }

    // MARK: - Control plane

    /// Message tags of the control plane (point to point, over the world).
    enum Tag {
        static let fields = 21
        /// A worker's own timeout (`WorkerTimeout` as JSON), sent in place of its report.
        static let timeout = 22
        static let planLength = 23, plan = 24
    }

    /// Sends the coordinator's `value` (the next step's plan) to every process. Workers wait for it without
    /// spinning.
    ///
    /// Point to point (its length, then its JSON, to each worker), not `MPI_Bcast`: a broadcast may travel
    /// through a tree of workers, and then a worker stopped in it would look to the others like a silent
    /// coordinator. This way a worker's deadline on the plan names rank 0 only when rank 0 is the one silent.
    /// - Parameter value: the value on the coordinator; nil on workers.
    /// - Returns: the value, everywhere.
    public func sendToWorkers<Value: Codable>(_ value: Value?) throws -> Value {
        if isSingleProcess { return try world.broadcast(value, root: Self.coordinatorRank) }
        if isCoordinator {
            guard let value else {
                throw DistributedError.missingRootValue(what: "sendToWorkers", root: Self.coordinatorRank)
            }
            let bytes = Array(try JSONEncoder().encode(value))
            let length = [Int64(bytes.count)]
            for worker in 1..<world.size {
                try length.withUnsafeBytes { try world.send($0.baseAddress!, byteCount: 8, to: worker, tag: Tag.planLength) }
                try bytes.withUnsafeBytes { try world.send($0.baseAddress!, byteCount: $0.count, to: worker, tag: Tag.plan) }
            }
            return value
        }
        var length = [Int64(0)]
        try length.withUnsafeMutableBytes {
            try world.receive($0.baseAddress!, byteCount: 8, from: Self.coordinatorRank, tag: Tag.planLength)
        }
        guard length[0] > 0 && length[0] < 1 << 30 else {
            throw DistributedError.undecodable(what: "\(Value.self)", byteCount: 8, reason: "length \(length[0])")
        }
        var bytes = [UInt8](repeating: 0, count: Int(length[0]))
        try bytes.withUnsafeMutableBytes {
            try world.receive($0.baseAddress!, byteCount: $0.count, from: Self.coordinatorRank, tag: Tag.plan)
        }
        do {
            return try JSONDecoder().decode(Value.self, from: Data(bytes))
        } catch {
            throw DistributedError.undecodable(what: "\(Value.self)", byteCount: bytes.count, reason: "\(error)")
        }
    }

    /// Collects `count` Doubles from every worker onto the coordinator (the step reports): each worker sends
    /// its own to rank 0 point to point, so that on a deadline the coordinator knows exactly which workers did
    /// not answer.
    /// - Parameter fields: this worker's `count` values; nil on a coordinator that is not also a worker.
    /// - Returns: on the coordinator, each worker's values in worker-index order; nil on workers.
    /// - Throws: `DistributedError.missingRootValue` if a worker passed nil, `.malformedReport` for a wrong
    ///   length, `.timedOut` (naming the workers not heard from), or `MPIError`.
    public func collectFromWorkers(_ fields: [Double]?, count: Int) throws -> [[Double]]? {
        if isWorker && fields == nil {
            throw DistributedError.missingRootValue(what: "collectFromWorkers on worker \(workerIndex ?? -1)", root: world.rank)
        }
        if let fields, fields.count != count {
            throw DistributedError.malformedReport(rank: world.rank, fieldCount: fields.count, expected: count)
        }
        if isSingleProcess { return fields.map { [$0] } }
        if let fields {
            try fields.withUnsafeBytes {
                try world.send($0.baseAddress!, byteCount: $0.count, to: Self.coordinatorRank, tag: Tag.fields)
            }
            return nil
        }
        let sources = Array(1..<world.size)
        // On a deadline the pending receives are cancelled (MPI) or never started (in-process) before the error
        // reaches here, so the buffer may go.
        var received = [Double](repeating: .nan, count: count * sources.count)
        try received.withUnsafeMutableBufferPointer { buffer in
            try world.receiveFromEach(
                sources.indices.map { UnsafeMutableRawPointer(buffer.baseAddress! + $0 * count) },
                byteCount: count * 8, from: sources, tag: Tag.fields)
        }
        return sources.indices.map { Array(received[$0 * count ..< ($0 + 1) * count]) }
    }

    // MARK: - Hangs

    /// On a worker whose own wait timed out on its peers (not on the coordinator): tells the coordinator, so
    /// that its message can say who waited for whom. A failure to send is written to standard error.
    public func reportTimeout(_ timeout: WorkerTimeout) {
        guard !isCoordinator, !isSingleProcess else { return }
        do {
            let bytes = Array(try JSONEncoder().encode(timeout))
            world.phase = "the timeout report to rank 0"
            try bytes.withUnsafeBytes {
                try world.send($0.baseAddress!, byteCount: $0.count, to: Self.coordinatorRank, tag: Tag.timeout)
            }
        } catch {
            log.error("rank \(worldRank): could not report its timeout to rank 0: \(error)")
        }
    }

    /// On the coordinator, after its wait `timedOut` passed the deadline: listens up to `grace` seconds for the
    /// workers' own timeout reports (a worker stuck in the gradient sync with a stopped peer says so), then
    /// returns the error to end the job with, naming the ranks that never answered and what the others said.
    public func diagnoseHang(_ timedOut: WorkerTimeout, grace: Double) -> DistributedError {
        var timeouts: [WorkerTimeout] = []
        var silent = Set(timedOut.waitingFor)
        if !isSingleProcess {
            let end = monotonicSeconds() + grace
            do {
                while monotonicSeconds() < end && !silent.isEmpty {
                    guard let (source, byteCount) = try world.probe(tag: Tag.timeout) else {
                        sleepMicroseconds(10_000)
                        continue
                    }
                    var bytes = [UInt8](repeating: 0, count: max(byteCount, 1))
                    world.phase = "the timeout report of rank \(source)"
                    try bytes.withUnsafeMutableBytes {
                        try world.receive($0.baseAddress!, byteCount: byteCount, from: source, tag: Tag.timeout)
                    }
                    silent.remove(source)
                    do {
                        timeouts.append(try JSONDecoder().decode(WorkerTimeout.self, from: Data(bytes.prefix(byteCount))))
                    } catch {
                        timeouts.append(WorkerTimeout(
                            rank: source, phase: "a timeout report that did not decode (\(error))", waitedSeconds: 0,
                            waitingFor: []))
                    }
                }
            } catch {
                log.error("rank 0: while collecting timeout reports: \(error)")
            }
        }
        return .hang(
            phase: timedOut.phase, waitedSeconds: timedOut.waitedSeconds, silent: silent.sorted(),
            timeouts: timeouts.sorted { $0.rank < $1.rank })
    }
}
