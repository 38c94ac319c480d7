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
    /// G: windows per step over all workers.
    public let globalBatchWindows: Int
    /// G / N: windows this worker reads per step.
    public let localBatchWindows: Int
    public let rank: Int
    public let worldSize: Int
    public let seed: UInt64
    public let shuffle: Bool
    /// The next global batch. Setting it (to restore a checkpoint) moves the stream there directly.
    public var cursor: DataCursor {
        didSet { cursor = normalized(cursor) }
    }

    private let order: GlobalOrder

    /// - Throws: `DataError.invalidArgument` when G is not a positive multiple of N, the rank is outside 0..<N,
    ///   or the dataset has fewer than G windows.
    public init(
        dataset: TokenWindowDataset, globalBatchWindows: Int, seed: UInt64, shuffle: Bool,
        rank: Int, worldSize: Int, cursor: DataCursor = .init(epoch: 0, position: 0)
    ) throws {
        guard worldSize > 0, rank >= 0, rank < worldSize else {
            throw DataError.invalidArgument("rank \(rank) is not in 0..<\(worldSize)")
        }
        guard globalBatchWindows > 0, globalBatchWindows % worldSize == 0 else {
            throw DataError.invalidArgument(
                "global batch of \(globalBatchWindows) windows is not a positive multiple of the \(worldSize) workers")
        }
        guard dataset.windowCount >= globalBatchWindows else {
            throw DataError.invalidArgument(
                "the data holds \(dataset.windowCount) windows of \(dataset.sequenceLength + 1) tokens, fewer than one global batch of \(globalBatchWindows)")
        }
        guard cursor.epoch >= 0, cursor.position >= 0 else {
            throw DataError.invalidArgument("cursor (epoch \(cursor.epoch), position \(cursor.position)) is negative")
        }
        self.dataset = dataset
        self.globalBatchWindows = globalBatchWindows
        self.localBatchWindows = globalBatchWindows / worldSize
        self.rank = rank
        self.worldSize = worldSize
        self.seed = seed
        self.shuffle = shuffle
        self.order = GlobalOrder(blockCounts: dataset.shardWindowCounts, seed: seed, shuffle: shuffle)
        self.cursor = cursor
        self.cursor = normalized(cursor)
    }

    /// Fills this worker's slice of the next global batch and advances the cursor by the whole global batch.
    /// - Parameters:
    ///   - inputs: (localBatchWindows, T) tokens.
    ///   - targets: (localBatchWindows, T) tokens: the inputs shifted by one.
    public func nextBatch(inputs: UnsafeMutablePointer<Int32>, targets: UnsafeMutablePointer<Int32>) {
        let T = dataset.sequenceLength
        let first = cursor.position &+ rank &* localBatchWindows
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

    /// The cursor in normal form: the start of a batch that fits in its epoch.
    private func normalized(_ cursor: DataCursor) -> DataCursor {
        precondition(cursor.epoch >= 0 && cursor.position >= 0, "negative cursor \(cursor)")
        if cursor.position + globalBatchWindows > order.total { return DataCursor(epoch: cursor.epoch + 1, position: 0) }
        return cursor
    }
}
