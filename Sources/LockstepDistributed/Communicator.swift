/// The collective operations training needs, over a group of processes.
///
/// `MPICommunicator` is the real one; `LocalCommunicator` is the one-process stand-in that makes every
/// distributed code path testable without mpirun.
public protocol Communicator: AnyObject {
    /// This process's index in the group, `0 ..< size`.
    var rank: Int { get }
    var size: Int { get }

    /// Sums `count` Floats across the group, in place: afterwards every rank holds the sum.
    func allreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws
    /// Sums `count` Doubles across the group, in place.
    func allreduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws
    /// Copies `count` bytes from `root` to every other rank.
    func broadcast(_ buffer: UnsafeMutableRawPointer, byteCount: Int, root: Int) throws
    func barrier() throws
}

/// A group of one: collectives are identities.
public final class LocalCommunicator: Communicator {
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public func allreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {}
    public func allreduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws {}
    public func broadcast(_ buffer: UnsafeMutableRawPointer, byteCount: Int, root: Int) throws {}
    public func barrier() throws {}
}
