import CMPI

/// Sends started now and completed later, all together (`Communicator.startSend`, `finish`): the checkpoint
/// handoff, whose hundreds of megabytes travel while the next step computes. Until `finish` returns, the
/// buffers sent must not change.
public struct PendingTransfers {
    /// MPI's requests, one per piece of a message, and the peer of each (named when the deadline passes).
    var requests: [MPI_Request?] = []
    var peers: [Int] = []

    public init() {}

    public var isEmpty: Bool { requests.isEmpty }
}

extension Communicator {
    /// Sends at once: the in-process communicators queue a message and return, so there is nothing to finish.
    public func startSend(
        _ buffer: UnsafeRawPointer, byteCount: Int, to destination: Int, tag: Int, adding transfers: inout PendingTransfers
    ) throws {
        try send(buffer, byteCount: byteCount, to: destination, tag: tag)
    }

    public func finish(_ transfers: inout PendingTransfers) throws {}
}

extension MPICommunicator {
    /// `MPI_Isend` in pieces of `maxCountPerCall` bytes, all with `tag` (MPI keeps their order). On one host
    /// Open MPI's single copy (CMA) has the receiver copy the bytes straight out of `buffer`, on its own CPU,
    /// when it posts its receive; this process need not be in an MPI call meanwhile.
    public func startSend(
        _ buffer: UnsafeRawPointer, byteCount: Int, to destination: Int, tag: Int, adding transfers: inout PendingTransfers
    ) throws {
        var offset = 0
        repeat {
            let n = min(byteCount - offset, maxCountPerCall)
            var request: MPI_Request? = cmpi_request_null()
            try checkMPI(
                MPI_Isend(buffer + offset, Int32(n), cmpi_byte(), Int32(destination), Int32(tag), comm, &request),
                "MPI_Isend(\(n) bytes to \(destination))")
            transfers.requests.append(request)
            transfers.peers.append(destination)
            offset += n
        } while offset < byteCount
    }

    /// Spins until every send completes, under `hangTimeout`.
    public func finish(_ transfers: inout PendingTransfers) throws {
        try waitAll(
            &transfers.requests, policy: .blocking, traffic: .pointToPoint(peer: transfers.peers.first ?? 0),
            peers: transfers.peers, "MPI_Waitall(\(transfers.peers.count) sends)")
        transfers.peers.removeAll()
    }
}
