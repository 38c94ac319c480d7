import CMPI

/// Process-wide MPI state. MPI may be initialised once per process and not again after finalising,
/// so tests running in parallel share one initialisation and never finalise.
public enum MPIRuntime {
    /// Initialises MPI if it is not yet (a process started without mpirun becomes a one-process job).
    public static func initialize() throws {
        var initialized: Int32 = 0
        try checkMPI(MPI_Initialized(&initialized), "MPI_Initialized")
        if initialized != 0 { return }
        var provided: Int32 = 0
        try checkMPI(MPI_Init_thread(nil, nil, Int32(MPI_THREAD_FUNNELED), &provided), "MPI_Init_thread")
    }

    public static func finalize() throws {
        var finalized: Int32 = 0
        try checkMPI(MPI_Finalized(&finalized), "MPI_Finalized")
        if finalized == 0 { try checkMPI(MPI_Finalize(), "MPI_Finalize") }
    }
}

/// A communicator over MPI: the world, or a group split from it.
public final class MPICommunicator: Communicator {
    let comm: MPI_Comm
    public let rank: Int
    public let size: Int

    /// Every process of the job. Initialises MPI if needed.
    public static func world() throws -> MPICommunicator {
        try MPIRuntime.initialize()
        return try MPICommunicator(comm: cmpi_comm_world())
    }

    init(comm: MPI_Comm) throws {
        self.comm = comm
        var rank: Int32 = 0, size: Int32 = 0
        try checkMPI(MPI_Comm_rank(comm, &rank), "MPI_Comm_rank")
        try checkMPI(MPI_Comm_size(comm, &size), "MPI_Comm_size")
        self.rank = Int(rank)
        self.size = Int(size)
    }

    /// Splits this group by `color`; ranks in the new group are ordered by `key`. Collective.
    public func split(color: Int, key: Int) throws -> MPICommunicator {
        var newComm: MPI_Comm? = nil
        try checkMPI(MPI_Comm_split(comm, Int32(color), Int32(key), &newComm), "MPI_Comm_split")
        guard let newComm else { throw MPIError(call: "MPI_Comm_split", code: -1, message: "returned no communicator") }
        return try MPICommunicator(comm: newComm)
    }

    public func allreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {
        try forEachChunk(count) { offset, n in
            try checkMPI(
                MPI_Allreduce(cmpi_in_place(), buffer + offset, n, cmpi_float(), cmpi_op_sum(), comm),
                "MPI_Allreduce(float, \(n))")
        }
    }

    public func allreduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws {
        try forEachChunk(count) { offset, n in
            try checkMPI(
                MPI_Allreduce(cmpi_in_place(), buffer + offset, n, cmpi_double(), cmpi_op_sum(), comm),
                "MPI_Allreduce(double, \(n))")
        }
    }

    public func broadcast(_ buffer: UnsafeMutableRawPointer, byteCount: Int, root: Int) throws {
        try forEachChunk(byteCount) { offset, n in
            try checkMPI(MPI_Bcast(buffer + offset, n, cmpi_byte(), Int32(root), comm), "MPI_Bcast(\(n) bytes)")
        }
    }

    public func barrier() throws {
        try checkMPI(MPI_Barrier(comm), "MPI_Barrier")
    }

    /// MPI counts are C `int`: longer buffers go in pieces.
    private func forEachChunk(_ count: Int, _ body: (Int, Int32) throws -> Void) throws {
        var offset = 0
        while offset < count {
            let n = min(count - offset, Int(Int32.max))
            try body(offset, Int32(n))
            offset += n
        }
    }
}
