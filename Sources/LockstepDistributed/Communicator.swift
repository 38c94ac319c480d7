/// How the elements of a reduction combine.
public enum ReductionOp: Sendable {
    case sum, min, max
}

/// The collective operations training needs, over a group of processes.
///
/// `MPICommunicator` is the real one; `LocalCommunicator` is the one-process stand-in that makes every
/// distributed code path testable without mpirun. Every method is collective: every rank of the group calls
/// it, in the same order, with the same counts.
public protocol Communicator: AnyObject {
    /// This process's index in the group, `0 ..< size`.
    var rank: Int { get }
    var size: Int { get }

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
    /// Copies `count` bytes from `root` to every other rank.
    func broadcast(_ buffer: UnsafeMutableRawPointer, byteCount: Int, root: Int) throws
    func barrier() throws

    /// Sends `byteCount` bytes to rank `destination`, which receives them with `receive` and the same `tag`;
    /// returns once `buffer` may be reused. Not collective: only the two ranks take part. For handing
    /// parameters from a worker to the coordinator for a checkpoint.
    func send(_ buffer: UnsafeRawPointer, byteCount: Int, to destination: Int, tag: Int) throws
    /// Receives `byteCount` bytes sent by rank `source` with `tag`.
    func receive(_ buffer: UnsafeMutableRawPointer, byteCount: Int, from source: Int, tag: Int) throws
}

/// A group of one: collectives are identities.
public final class LocalCommunicator: Communicator {
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public func allreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {}
    public func allreduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws {}
    public func allreduce(_ buffer: UnsafeMutablePointer<UInt64>, count: Int, op: ReductionOp) throws {}
    public func reduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int, root: Int) throws {}
    public func gather(_ send: UnsafeRawPointer, byteCount: Int, into receive: UnsafeMutableRawPointer?, root: Int) throws {
        if let receive, receive != UnsafeMutableRawPointer(mutating: send) {
            receive.copyMemory(from: send, byteCount: byteCount)
        }
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
        mailbox[tag]!.removeFirst()
        message.withUnsafeBytes { buffer.copyMemory(from: $0.baseAddress!, byteCount: byteCount) }
    }
}
