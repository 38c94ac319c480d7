/// The roles of a Lockstep job and the communicators between them.
///
/// With mpirun, world rank 0 is the coordinator and world ranks 1...N are the workers; the workers split off
/// their own communicator for gradient traffic, so the coordinator never slows the allreduce. The world
/// communicator (the control plane: step plans and reports) waits by sleeping (`WaitPolicy.idle`), so an idle
/// coordinator does not burn a core; the workers' communicator blocks, for the lowest latency.
///
/// A job of one process (started without mpirun, or `-np 1`) plays both roles: it is the coordinator and
/// worker 0 of one worker, and every communicator is a `LocalCommunicator`.
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

    /// The roles of this process in the MPI job it was started in; initialises MPI if needed. Collective over
    /// MPI_COMM_WORLD (it splits off the workers' communicator), so every rank calls it at startup.
    /// A world of one process gives `singleProcess()`.
    /// - Parameter controlWait: how world collectives wait; `.idle` keeps waiting ranks off the CPU.
    public static func fromMPI(controlWait: WaitPolicy = .idle) throws -> ProcessGroups {
        let world = try MPICommunicator.world()
        if world.size == 1 { return singleProcess() }
        world.waitPolicy = controlWait
        let isCoordinator = world.rank == coordinatorRank
        // The coordinator joins no group; the workers keep their world order.
        let workers = try world.split(color: isCoordinator ? nil : 1, key: world.rank)
        workers?.waitPolicy = .blocking
        return ProcessGroups(
            world: world, workers: workers, isCoordinator: isCoordinator,
            workerIndex: workers?.rank, workerCount: world.size - 1)
    }

    // MARK: - Control plane

    /// Sends the coordinator's plan for the next step to every process. Workers wait for it without spinning.
    /// - Parameter plan: the plan on the coordinator; nil on workers.
    /// - Returns: the plan, everywhere.
    public func broadcastPlan(_ plan: StepPlan?) throws -> StepPlan {
        try world.broadcast(plan, root: Self.coordinatorRank)
    }

    /// Collects every worker's report onto the coordinator.
    /// - Parameter report: this worker's report; nil on a coordinator that is not also a worker.
    /// - Returns: on the coordinator, the reports in worker-index order; nil on workers.
    /// - Throws: `DistributedError.missingRootValue` if a worker passed nil, `.malformedReport`, or `MPIError`.
    public func gatherReports(_ report: WorkerReport?) throws -> [WorkerReport]? {
        if isWorker && report == nil {
            throw DistributedError.missingRootValue(what: "gatherReports on worker \(workerIndex!)", root: world.rank)
        }
        // The coordinator of a multi-process job contributes zeros, dropped below.
        let fields = report?.fields ?? [Double](repeating: 0, count: WorkerReport.fieldCount)
        guard let gathered = try world.gather(fields, root: Self.coordinatorRank) else { return nil }
        let fromWorkers = isSingleProcess ? gathered : Array(gathered.dropFirst())
        return try fromWorkers.enumerated().map { index, fields in
            guard let report = WorkerReport(fields: fields) else {
                throw DistributedError.malformedReport(
                    rank: isSingleProcess ? 0 : index + 1, fieldCount: fields.count, expected: WorkerReport.fieldCount)
            }
            return report
        }
    }
}
