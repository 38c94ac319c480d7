/// How the elements of a reduction combine.
public enum ReductionOp: Sendable {
    case sum, min, max
}

/// The collective operations training needs, over a group of processes.
///
/// `MPICommunicator` is the real one; `InProcessCommunicator` (ranks as threads of one process,
/// `InProcessGroup`) and `LocalCommunicator` (a group of one) make every distributed code path testable without
/// mpirun. Every method but the point-to-point ones (`send`, `receive`, `startSend`, `finish`, `receiveFromEach`,
/// `probe`) is collective: every rank of the group calls it, in the same order, with the same
/// counts.
public protocol Communicator: AnyObject {
    /// This process's index in the group, `0 ..< size`.
    var rank: Int { get }
    var size: Int { get }

    /// Seconds any wait on another rank may last before it throws `DistributedError.timedOut` naming `phase`;
    /// nil waits forever. A group of one never waits, and ignores it.
    var hangTimeout: Double? { get set }
    /// What the caller is waiting for, named in timeouts: "gradient sync of step 412", "report of step 12".
    var phase: String { get set }

    /// Sums `count` Floats across the group, in place: afterwards every rank holds the sum.
    func allreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws
    /// Sums `count` Doubles across the group, in place.
    func allreduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws
    /// Combines `count` UInt64s across the group with `op`, in place (checksums, flags).
    func allreduce(_ buffer: UnsafeMutablePointer<UInt64>, count: Int, op: ReductionOp) throws
    /// Sums `count` Doubles onto `root`, in place there; other ranks' buffers are left as they were.
    func reduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int, root: Int) throws
    /// Collects `byteCount` bytes from every rank onto `root`, in rank order: `receive` holds
    /// `byteCount * size` bytes on `root` and is ignored (may be nil) elsewhere.
    func gather(_ send: UnsafeRawPointer, byteCount: Int, into receive: UnsafeMutableRawPointer?, root: Int) throws
    /// Sums the group's buffers of `counts.reduce(0, +)` Floats in place, each rank receiving its own part only:
    /// afterwards rank `r`'s `counts[r]` elements at offset `counts[..<r].reduce(0, +)` hold the sum's, and the
    /// rest of its buffer keeps its values. Sharded optimizer state (ZeRO-1): each worker gets the gradient sum
    /// of its own shard, in place, with no second buffer. Every rank passes the same `counts`, one per rank.
    func reduceScatterSum(_ buffer: UnsafeMutablePointer<Float>, counts: [Int]) throws
    /// In place: rank `r`'s part of `buffer`, the `counts[r]` Floats at offset `counts[..<r].reduce(0, +)`, is copied
    /// to the same place on every other rank. After a sharded optimizer step every worker holds every shard's
    /// updated parameters. Every rank passes the same `counts`, one per rank.
    func allgather(_ buffer: UnsafeMutablePointer<Float>, counts: [Int]) throws
    /// Copies `count` bytes from `root` to every other rank.
    func broadcast(_ buffer: UnsafeMutableRawPointer, byteCount: Int, root: Int) throws
    func barrier() throws

    /// Sends `byteCount` bytes to rank `destination`, which receives them with `receive` and the same `tag`;
    /// returns once `buffer` may be reused. Not collective: only the two ranks take part. For handing
    /// parameters from a worker to the coordinator for a checkpoint.
    func send(_ buffer: UnsafeRawPointer, byteCount: Int, to destination: Int, tag: Int) throws
    /// Receives `byteCount` bytes sent by rank `source` with `tag`.
    func receive(_ buffer: UnsafeMutableRawPointer, byteCount: Int, from source: Int, tag: Int) throws

    /// Starts sending `byteCount` bytes to `destination`, which receives them with `receive` and the same `tag`;
    /// added to `transfers`, which `finish` completes. The checkpoint handoff's state, sent while the next step
    /// computes.
    func startSend(
        _ buffer: UnsafeRawPointer, byteCount: Int, to destination: Int, tag: Int, adding transfers: inout PendingTransfers
    ) throws
    /// Completes every send of `transfers` under `hangTimeout`, and empties it.
    func finish(_ transfers: inout PendingTransfers) throws

    /// Receives from each of `sources` one message of `byteCount` bytes with `tag`, into `buffers[i]` from
    /// `sources[i]`, under one deadline: on a timeout the error names every source not heard from (the
    /// coordinator's collection of the step reports).
    func receiveFromEach(_ buffers: [UnsafeMutableRawPointer], byteCount: Int, from sources: [Int], tag: Int) throws

    /// Looks once, without waiting, for a message with `tag` from any rank to this one.
    /// - Returns: its source and size in bytes, or nil if none has arrived.
    func probe(tag: Int) throws -> (source: Int, byteCount: Int)?
}

extension Communicator {
    /// One receive after another, in the order of `sources`. A communicator whose receives can be posted at
    /// once (MPI) or waited on together (in-process) overrides it, to name every silent source on a timeout.
    public func receiveFromEach(_ buffers: [UnsafeMutableRawPointer], byteCount: Int, from sources: [Int], tag: Int) throws {
        for (buffer, source) in zip(buffers, sources) {
            try receive(buffer, byteCount: byteCount, from: source, tag: tag)
        }
    }
}

extension Communicator {
    /// Where each rank's part starts in a reduce-scatter or all-gather of `counts`: the running sums, one per rank.
    /// - Throws: `DistributedError.invalidCounts` unless `counts` has one count ≥ 0 per rank.
    func partOffsets(_ counts: [Int], call: String) throws -> [Int] {
        guard counts.count == size, counts.allSatisfy({ $0 >= 0 }) else {
            throw DistributedError.invalidCounts(call: call, counts: counts, size: size)
        }
        var offsets: [Int] = []
        offsets.reserveCapacity(size)
        var offset = 0
        for count in counts {
            offsets.append(offset)
            offset += count
        }
        return offsets
    }
}

/// A group of one: collectives are identities.
public final class LocalCommunicator: Communicator {
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    /// Kept for `ProcessGroups`; nothing here ever waits.
    public var hangTimeout: Double?
    public var phase = "a one-process call"
    public func allreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {}
    public func allreduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws {}
    public func allreduce(_ buffer: UnsafeMutablePointer<UInt64>, count: Int, op: ReductionOp) throws {}
    public func reduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int, root: Int) throws {}
    public func gather(_ send: UnsafeRawPointer, byteCount: Int, into receive: UnsafeMutableRawPointer?, root: Int) throws {
        if let receive, receive != UnsafeMutableRawPointer(mutating: send) {
            receive.copyMemory(from: send, byteCount: byteCount)
        }
    }
    public func reduceScatterSum(_ buffer: UnsafeMutablePointer<Float>, counts: [Int]) throws {
        _ = try partOffsets(counts, call: "reduceScatterSum")
    }
    public func allgather(_ buffer: UnsafeMutablePointer<Float>, counts: [Int]) throws {
        _ = try partOffsets(counts, call: "allgather")
    }
    public func broadcast(_ buffer: UnsafeMutableRawPointer, byteCount: Int, root: Int) throws {}
    public func barrier() throws {}

    /// Messages to itself, first in first out per tag: a send must come before its receive.
    private var mailbox: [Int: [[UInt8]]] = [:]

    public func send(_ buffer: UnsafeRawPointer, byteCount: Int, to destination: Int, tag: Int) throws {
        mailbox[tag, default: []].append(Array(UnsafeRawBufferPointer(start: buffer, count: byteCount)))
    }

    /// - Throws: `DistributedError.nothingToReceive` when no message with `tag` was sent, or one of another size
    ///   (over MPI either would hang or fail).
    public func receive(_ buffer: UnsafeMutableRawPointer, byteCount: Int, from source: Int, tag: Int) throws {
        guard let message = mailbox[tag]?.first, message.count == byteCount else {
            throw DistributedError.nothingToReceive(tag: tag, byteCount: byteCount, pending: mailbox[tag]?.first?.count)
        }
        mailbox[tag]?.removeFirst()
        message.withUnsafeBytes { if let base = $0.baseAddress { buffer.copyMemory(from: base, byteCount: byteCount) } }
    }

    public func probe(tag: Int) throws -> (source: Int, byteCount: Int)? {
        mailbox[tag]?.first.map { (0, $0.count) }
    }
}
