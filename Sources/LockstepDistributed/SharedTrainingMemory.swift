import CMPI
import Foundation

/// The parameters (one copy) and every worker's gradients in memory that all workers of one host map: two
/// MPI-3 shared-memory windows (`MPI_Win_allocate_shared`, backed by /dev/shm).
///
/// Why: with sharded optimizer state on one host, MPI's reduce-scatter copies each gradient shard into a
/// buffer of the receiver's before adding it, and its all-gather copies every updated shard back out. Here a
/// worker reads the other workers' gradients where their backward wrote them, adds them into its own shard,
/// updates its shard of the one parameter copy in place, and a barrier publishes the update: per step about a
/// third of the memory traffic, which on a small machine is the cost of data parallelism.
///
/// Synchronisation: `synchronize()` (an `MPI_Win_sync`, a barrier with the communicator's deadline, another
/// sync) separates writes on one worker from reads on another. Training calls it after backward (every
/// gradient final) and after the update (every shard written).
public final class SharedTrainingMemory {
    /// The one copy of the parameters, `count` Floats, in worker 0's segment.
    public let parameters: UnsafeMutableBufferPointer<Float>
    /// Every worker's gradients, `count` Floats each, in rank order. A worker writes only its own, except for
    /// its shard of the sums, which it writes into its own buffer too.
    public let gradients: [UnsafeMutableBufferPointer<Float>]
    /// This worker's rank among the workers (and in `gradients`).
    public let rank: Int
    private let communicator: MPICommunicator
    private let nodeComm: MPI_Comm
    private var windows: [MPI_Win?]

    /// Why the workers could not share memory; training then sums the shards through MPI.
    public struct Unavailable: Error, CustomStringConvertible {
        public let description: String
    }

    /// Allocates the two windows over `communicator` (collective), or says why not: its ranks are not all on
    /// one host, the backing directory (Open MPI's `osc_sm_backing_directory`, /dev/shm by default) has less
    /// room than (workers + 1) × `count` Floats, `communicator` is not MPI's, or there is only one worker.
    /// - Throws: `MPIError` when MPI fails to create the windows all the same.
    public static func allocate(communicator: any Communicator, count: Int) throws -> Result<SharedTrainingMemory, Unavailable> {
        guard let mpi = communicator as? MPICommunicator, mpi.size > 1, count > 0 else {
            return .failure(Unavailable(description: "only over MPI, with more than one worker"))
        }
        let watch = mpi.hangTimeout.map {
            HangWatchdog.shared.arm(rank: mpi.worldRank, phase: "\(mpi.phase) (shared-memory windows)", seconds: $0)
        }
        defer { if let watch { HangWatchdog.shared.disarm(watch) } }
        var node: MPI_Comm? = nil
        try checkMPI(
            MPI_Comm_split_type(mpi.comm, Int32(cmpi_comm_type_shared()), Int32(mpi.rank), cmpi_info_null(), &node),
            "MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)")
        guard let node else { throw MPIError(call: "MPI_Comm_split_type", code: -1, message: "returned no communicator") }
        var nodeSize: Int32 = 0
        try checkMPI(MPI_Comm_size(node, &nodeSize), "MPI_Comm_size(shared)")
        // Every worker must agree on each answer, so all of them take the same path.
        let oneHost = try mpi.allAgree(flag: Int(nodeSize) == mpi.size)
        let directory = getenv("OMPI_MCA_osc_sm_backing_directory").map { String(cString: $0) } ?? "/dev/shm"
        let (floats, overflow) = (mpi.size + 1).multipliedReportingOverflow(by: count)
        let needed = overflow || floats > Int.max / MemoryLayout<Float>.stride ? Int.max : floats * MemoryLayout<Float>.stride
        let room = Self.freeBytes(directory)
        let fits = try mpi.allAgree(flag: (room ?? 0) >= needed)
        guard oneHost && fits else {
            var handle: MPI_Comm? = node
            try checkMPI(MPI_Comm_free(&handle), "MPI_Comm_free(shared)")
            let reason = !oneHost
                ? "the workers are on more than one host"
                : "\(directory) has \(room.map(Self.mebibytes) ?? "no readable room") free, "
                    + "\(Self.mebibytes(needed)) needed (in Docker: --shm-size)"
            return .failure(Unavailable(description: reason))
        }
        return .success(try SharedTrainingMemory(communicator: mpi, node: node, count: count))
    }

    private static func mebibytes(_ bytes: Int) -> String {
        String(format: "%.1f MiB", Double(bytes) / 1_048_576)
    }

    /// Bytes an unprivileged process may still write under `path`; nil when it cannot be read.
    private static func freeBytes(_ path: String) -> Int? {
        var stats = statvfs()
        guard statvfs(path, &stats) == 0 else { return nil }
        let (bytes, overflow) = Int(stats.f_bavail).multipliedReportingOverflow(by: Int(stats.f_frsize))
        return overflow ? Int.max : bytes
    }

    private init(communicator: MPICommunicator, node: MPI_Comm, count: Int) throws {
        self.communicator = communicator
        self.nodeComm = node
        rank = communicator.rank
        let bytes = count * MemoryLayout<Float>.stride
        windows = []
        // Window 0: the parameters, all in rank 0's segment. Window 1: a gradient buffer per rank.
        var segments: [[UnsafeMutablePointer<Float>]] = []
        for perRank in [rank == 0 ? bytes : 0, bytes] {
            var base: UnsafeMutableRawPointer? = nil
            var window: MPI_Win? = cmpi_win_null()
            try checkMPI(
                MPI_Win_allocate_shared(MPI_Aint(perRank), Int32(MemoryLayout<Float>.stride), cmpi_info_null(), node, &base, &window),
                "MPI_Win_allocate_shared of \(perRank) bytes")
            windows.append(window)
            try checkMPI(MPI_Win_lock_all(Int32(cmpi_mode_nocheck()), window), "MPI_Win_lock_all")
            // The parameters' window: rank 0's segment only; the gradients': every rank's.
            var pointers: [UnsafeMutablePointer<Float>] = []
            for r in 0..<(segments.isEmpty ? 1 : communicator.size) {
                var size: MPI_Aint = 0, unit: Int32 = 0
                var segment: UnsafeMutableRawPointer? = nil
                try checkMPI(MPI_Win_shared_query(window, Int32(r), &size, &unit, &segment), "MPI_Win_shared_query")
                guard let segment, Int(size) >= bytes else {
                    throw MPIError(call: "MPI_Win_shared_query", code: -1, message: "rank \(r)'s segment holds \(size) of \(bytes) bytes")
                }
                pointers.append(segment.assumingMemoryBound(to: Float.self))
            }
            segments.append(pointers)
        }
        parameters = UnsafeMutableBufferPointer(start: segments[0][0], count: count)
        gradients = segments[1].map { UnsafeMutableBufferPointer(start: $0, count: count) }
        // Each worker zeroes its own gradients; worker 0 the parameters.
        gradients[rank].update(repeating: 0)
        if rank == 0 { parameters.update(repeating: 0) }
        try synchronize()
    }

    /// Makes every worker's writes so far visible to every other worker: collective, under the communicator's
    /// deadline (a worker that never arrives is named).
    public func synchronize() throws {
        for window in windows { try checkMPI(MPI_Win_sync(window), "MPI_Win_sync") }
        try communicator.barrier()
        for window in windows { try checkMPI(MPI_Win_sync(window), "MPI_Win_sync") }
    }

    /// Frees the windows: collective, so only where every worker ends normally. (A worker that fails leaves
    /// them to the end of the process rather than wait for the others.)
    public func release() throws {
        guard !windows.isEmpty else { return }
        for window in windows {
            try checkMPI(MPI_Win_unlock_all(window), "MPI_Win_unlock_all")
            var handle: MPI_Win? = window
            try checkMPI(MPI_Win_free(&handle), "MPI_Win_free")
        }
        windows = []
        var handle: MPI_Comm? = nodeComm
        try checkMPI(MPI_Comm_free(&handle), "MPI_Comm_free(shared)")
    }
}
