/// Where a stream stands in its global order of windows (or examples): saved in checkpoints, restored in O(1).
///
/// `position` is the number of items of the epoch's global order already consumed, counted over all workers,
/// so a cursor means the same thing whatever the number of workers, and a run resumed with a different worker
/// count re-slices the same global stream.
public struct DataCursor: Codable, Hashable, Sendable {
    public var epoch: Int
    public var position: Int

    public init(epoch: Int, position: Int) {
        self.epoch = epoch
        self.position = position
    }
}
