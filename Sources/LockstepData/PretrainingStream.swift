/// One worker's view of the global stream of training windows.
///
/// Every step consumes one global batch of G windows: positions `[p, p + G)` of the epoch's global order (see
/// `GlobalOrder`: a function of seed and epoch only). Worker r of N reads only its slice, positions
/// `[p + r·G/N, p + (r+1)·G/N)`, so N workers together read exactly the batch one worker would, and the data a
/// step sees does not depend on N.
///
/// Epoch rule: a global batch never straddles two epochs. When fewer than G windows remain in an epoch, they are
/// skipped and the cursor moves to (epoch + 1, 0); every epoch therefore yields ⌊windows / G⌋ batches. The
/// cursor is kept in this normal form after every batch, so a saved cursor always names the next batch.
public final class PretrainingStream {
    public let dataset: TokenWindowDataset
    public let seed: UInt64
    public let shuffle: Bool
    /// The next global batch. Setting it (to restore a checkpoint) moves the stream there directly.
    public var cursor: DataCursor {
        didSet { cursor = batching.normalized(cursor) }
    }

    private let batching: GlobalBatching
    private let order: GlobalOrder

    /// G: windows per step over all workers.
    public var globalBatchWindows: Int { batching.globalBatch }
    /// G / N: windows this worker reads per step.
    public var localBatchWindows: Int { batching.localBatch }
    public var rank: Int { batching.rank }
    public var worldSize: Int { batching.worldSize }

    /// - Throws: `DataError.invalidArgument` when G is not a positive multiple of N, the rank is outside 0..<N,
    ///   the dataset has fewer than G windows, or the cursor is negative.
    public init(
        dataset: TokenWindowDataset, globalBatchWindows: Int, seed: UInt64, shuffle: Bool,
        rank: Int, worldSize: Int, cursor: DataCursor = .init(epoch: 0, position: 0)
    ) throws {
        batching = try GlobalBatching(
            globalBatch: globalBatchWindows, rank: rank, worldSize: worldSize, total: dataset.windowCount, items: "windows")
        try batching.check(cursor)
        self.dataset = dataset
        self.seed = seed
        self.shuffle = shuffle
        self.order = GlobalOrder(blockCounts: dataset.shardWindowCounts, seed: seed, shuffle: shuffle)
        self.cursor = batching.normalized(cursor)
    }

    /// Fills this worker's slice of the next global batch and advances the cursor by the whole global batch.
    /// - Parameters:
    ///   - inputs: (localBatchWindows, T) tokens.
    ///   - targets: (localBatchWindows, T) tokens: the inputs shifted by one.
    public func nextBatch(inputs: UnsafeMutablePointer<Int32>, targets: UnsafeMutablePointer<Int32>) {
        let T = dataset.sequenceLength
        let first = batching.firstPosition(cursor)
        for b in 0..<localBatchWindows {
            let window = order.item(at: first &+ b, epoch: cursor.epoch)
            dataset.readWindow(window, inputs: inputs + b &* T, targets: targets + b &* T)
        }
        cursor.position += globalBatchWindows
    }

    /// The global (file-order) window index at `position` of `epoch`'s order: for inspection and tests.
    public func windowIndex(atPosition position: Int, epoch: Int) -> Int {
        order.item(at: position, epoch: epoch)
    }
}
