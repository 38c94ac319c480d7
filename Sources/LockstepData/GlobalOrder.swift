import LockstepRandom

extension SplitMix64 {
    /// A generator for one (seed, epoch, stream) triple; `stream` tells apart the shard-order shuffle (-1) and
    /// each shard's own shuffle (its index), so none of them is correlated with another.
    init(seed: UInt64, epoch: Int, stream: Int) {
        let a = SplitMix64.mix(seed &+ 0x5851_F42D_4C95_7F2D)
        let b = SplitMix64.mix(a ^ UInt64(bitPattern: Int64(epoch)))
        self.init(seed: SplitMix64.mix(b ^ UInt64(bitPattern: Int64(stream)) &* 0xD6E8_FEB8_6659_FD93))
    }
}

/// The global order of items (windows or examples) that live in blocks (shards), as a pure function of
/// (seed, epoch, position).
///
/// Without shuffling, position p is item p in file order. With shuffling, the epoch's order visits the blocks in
/// a seeded permutation of the blocks, and within each block its items in a seeded permutation of that block:
/// a block's items stay together, so a reader touches one shard at a time (good for the page cache), while
/// both the shard order and the order inside each shard change every epoch.
///
/// Any position is reached directly: a binary search over the permuted blocks, then the block's permutation,
/// computed on first use (O(items in the block), stored as `Int32`) and cached for the last two blocks. Memory:
/// O(blocks + items of two blocks), never the data itself.
final class GlobalOrder {
    /// Items in each block, in file order.
    let blockCounts: [Int]
    /// Global (file-order) index of each block's first item.
    let blockStarts: [Int]
    let total: Int
    let seed: UInt64
    let shuffle: Bool

    private var epoch: Int? = nil
    /// Blocks in the epoch's visiting order, and where each starts in the epoch's order.
    private var visitOrder: [Int] = []
    private var visitStarts: [Int] = []
    /// Permutations of recently used blocks for the current epoch, most recent last.
    private var cache: [(block: Int, permutation: [Int32])] = []

    init(blockCounts: [Int], seed: UInt64, shuffle: Bool) {
        self.blockCounts = blockCounts
        var starts: [Int] = []
        var sum = 0
        for count in blockCounts {
            starts.append(sum)
            sum += count
        }
        blockStarts = starts
        total = sum
        self.seed = seed
        self.shuffle = shuffle
    }

    /// The file-order index of the item at `position` (0 ..< total) of `epoch`'s order.
    func item(at position: Int, epoch: Int) -> Int {
        precondition(position >= 0 && position < total, "position \(position) out of range 0..<\(total)")
        guard shuffle else { return position }
        if self.epoch != epoch { prepare(epoch: epoch) }
        // The last visited block starting at or before `position`: among blocks sharing a start, the earlier
        // ones are empty, so the last one is the block that holds `position`.
        var low = 0
        var high = visitStarts.count - 1
        while low < high {
            let middle = (low + high + 1) / 2
            if visitStarts[middle] <= position { low = middle } else { high = middle - 1 }
        }
        let block = visitOrder[low]
        let local = position - visitStarts[low]
        return blockStarts[block] + Int(permutation(of: block)[local])
    }

    private func prepare(epoch: Int) {
        self.epoch = epoch
        var generator = SplitMix64(seed: seed, epoch: epoch, stream: -1)
        visitOrder = Array(blockCounts.indices)
        fisherYates(&visitOrder, &generator)
        visitStarts = []
        var sum = 0
        for block in visitOrder {
            visitStarts.append(sum)
            sum += blockCounts[block]
        }
        cache = []
    }

    private func permutation(of block: Int) -> [Int32] {
        if let found = cache.last(where: { $0.block == block }) { return found.permutation }
        var permutation = (0..<Int32(blockCounts[block])).map { $0 }
        var generator = SplitMix64(seed: seed, epoch: epoch!, stream: block)
        fisherYates(&permutation, &generator)
        if cache.count == 2 { cache.removeFirst() }
        cache.append((block, permutation))
        return permutation
    }
}

/// The Fisher–Yates shuffle, written out so the order depends only on the generator.
func fisherYates<Element>(_ array: inout [Element], _ generator: inout SplitMix64) {
    var i = array.count - 1
    while i > 0 {
        let j = generator.next(below: i + 1)
        array.swapAt(i, j)
        i -= 1
    }
}
