/// The arithmetic shared by the streams: G items per global batch over N workers, worker r's slice, and the
/// epoch rule.
///
/// Worker r reads positions `[p + r·G/N, p + (r+1)·G/N)` of the epoch's order at cursor position p, and every
/// worker advances the cursor by G. A batch never straddles two epochs: when fewer than G items remain, they
/// are skipped and the cursor moves to (epoch + 1, 0), so every epoch yields ⌊items / G⌋ batches.
struct GlobalBatching {
    let globalBatch: Int
    let localBatch: Int
    let rank: Int
    let worldSize: Int
    /// Items in one epoch.
    let total: Int

    /// - Parameter items: what is counted, for messages ("windows", "examples").
    init(globalBatch: Int, rank: Int, worldSize: Int, total: Int, items: String) throws {
        guard worldSize > 0, rank >= 0, rank < worldSize else {
            throw DataError.invalidArgument("rank \(rank) is not in 0..<\(worldSize)")
        }
        guard globalBatch > 0, globalBatch % worldSize == 0 else {
            throw DataError.invalidArgument(
                "a global batch of \(globalBatch) \(items) is not a positive multiple of the \(worldSize) workers")
        }
        guard total >= globalBatch else {
            throw DataError.invalidArgument("the data holds \(total) \(items), fewer than one global batch of \(globalBatch)")
        }
        self.globalBatch = globalBatch
        self.localBatch = globalBatch / worldSize
        self.rank = rank
        self.worldSize = worldSize
        self.total = total
    }

    func check(_ cursor: DataCursor) throws {
        guard cursor.epoch >= 0, cursor.position >= 0 else {
            throw DataError.invalidArgument("cursor (epoch \(cursor.epoch), position \(cursor.position)) is negative")
        }
    }

    /// The cursor in normal form: the start of a batch that fits in its epoch.
    func normalized(_ cursor: DataCursor) -> DataCursor {
        precondition(cursor.epoch >= 0 && cursor.position >= 0, "negative cursor \(cursor)")
        if cursor.position + globalBatch > total { return DataCursor(epoch: cursor.epoch + 1, position: 0) }
        return cursor
    }

    /// The epoch position of this worker's first item of the batch at `cursor`.
    func firstPosition(_ cursor: DataCursor) -> Int { cursor.position &+ rank &* localBatch }
}
