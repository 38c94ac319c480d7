import CMPI

/// ZeRO-1's gradient exchange: sums a gradient buffer across the workers in buckets, as `GradientBuckets` does,
/// but each worker receives only the sum of its own shard of the buffer (a reduce-scatter per bucket instead of
/// an allreduce), in place: `shardSums` is that shard of the buffer; the rest keeps the worker's own gradients.
/// The optimizer then updates that shard alone, and the workers all-gather the updated parameters
/// (`Communicator.allgather`).
///
/// Used as `GradientBuckets`, from the thread that initialised MPI:
/// ```
/// for layer in layers.reversed() {
///     backward(layer)
///     try buckets.bucketReady(bucketIndex(of: layer))   // starts one MPI_Ireduce per shard owner of that range
///     try buckets.poll()                                // lets Open MPI progress what is in flight
/// }
/// try buckets.finish()                                   // waits for all; shardSums holds this shard's sum
/// ```
/// Every worker starts the buckets in the same order. With a non-MPI communicator `bucketReady` takes the
/// blocking `reduceScatterSum` at once. The sums are the allreduce's with two workers (a + b is b + a); with
/// more, MPI may add in another order than its allreduce (the in-process group adds in rank order in both).
public final class ShardedGradientBuckets {
    /// Every worker's shard of a buffer of `count` elements: `workers` contiguous ranges in rank order, shard r
    /// = `r·count/workers ..< (r+1)·count/workers` (sizes differ by at most one). A function of the two counts
    /// only, so the coordinator computes the same shards to collect and hand out the optimizer state, whatever
    /// worker count wrote a checkpoint.
    /// - Returns: `workers` ranges (none when `workers` < 1).
    public static func shards(count: Int, workers: Int) -> [Range<Int>] {
        guard workers > 0 else { return [] }
        return (0..<workers).map { r in (r * count / workers) ..< ((r + 1) * count / workers) }
    }

    /// The buckets, as ranges of the gradient buffer, indexed in the order backward fills them.
    public var ranges: [Range<Int>] { progress.ranges }
    /// Every worker's shard of the gradient buffer (`shards(count:workers:)`), in rank order.
    public let shards: [Range<Int>]
    /// This worker's shard, `shards[rank]`.
    public var shard: Range<Int> { shards[communicator.rank] }
    /// After `finish`, the sum over the workers of the gradients in `shard`: the buffer's own elements
    /// `shard` (a view, no copy).
    public var shardSums: UnsafeMutableBufferPointer<Float> { UnsafeMutableBufferPointer(rebasing: buffer[shard]) }

    private let communicator: any Communicator
    private let mpi: MPICommunicator?
    private let buffer: UnsafeMutableBufferPointer<Float>
    private var progress: BucketProgress
    /// The buckets in flight (nil without MPI).
    private let requests: BucketRequests?
    /// Per bucket, each rank's part of it (the bucket's overlap with the rank's shard), ranges of the buffer.
    private let bucketParts: [[Range<Int>]]

    /// - Parameters:
    ///   - communicator: the workers' communicator (`ProcessGroups.workers`).
    ///   - buffer: the gradients, one block for all parameters; must outlive this object and stay untouched
    ///     between `bucketReady` of a range and `finish`. After `finish` only `shard` of it holds sums.
    ///   - ranges: non-empty, non-overlapping ranges of `buffer` in the order they become ready, together
    ///     covering all of it (a shard's sum must be complete).
    /// - Throws: `DistributedError.invalidBucketRange` naming the first bad range, `.bucketsDoNotCover`, or
    ///   `.countTooLarge` for a bucket past what one MPI call carries.
    ///   - progressThread: move the buckets in flight from a thread of their own rather than by `poll()`.
    public init(
        communicator: any Communicator, buffer: UnsafeMutableBufferPointer<Float>, ranges: [Range<Int>],
        progressThread: Bool = false
    ) throws {
        progress = try BucketProgress(ranges: ranges, bufferCount: buffer.count)
        var covered = 0
        for range in ranges.sorted(by: { $0.lowerBound < $1.lowerBound }) {
            if range.lowerBound != covered { break }
            covered = range.upperBound
        }
        if covered != buffer.count {
            let next = ranges.map(\.lowerBound).filter { $0 > covered }.min() ?? buffer.count
            throw DistributedError.bucketsDoNotCover(uncovered: covered..<next, bufferCount: buffer.count)
        }
        let shards = Self.shards(count: buffer.count, workers: communicator.size)
        self.communicator = communicator
        self.mpi = communicator as? MPICommunicator
        self.buffer = buffer
        self.shards = shards
        bucketParts = ranges.map { bucket in shards.map { $0.clamped(to: bucket) } }
        if let mpi {
            for (index, range) in ranges.enumerated() where range.count > min(mpi.maxCountPerCall, Int(Int32.max)) {
                throw DistributedError.countTooLarge(
                    call: "MPI_Ireduce of bucket \(index)", count: range.count, limit: mpi.maxCountPerCall)
            }
        }
        requests = mpi.map { BucketRequests(mpi: $0, capacity: ranges.count * shards.count, progressThread: progressThread) }
    }

    deinit { requests?.stop() }

    /// Whether a progress thread moves the buckets in flight.
    public var hasProgressThread: Bool { requests?.hasThread ?? false }

    /// Starts summing bucket `index`, each worker receiving its shard's part of it in place: over MPI one
    /// non-blocking `MPI_Ireduce` per part, rooted at its owner (why not `MPI_Ireduce_scatter`:
    /// `MPICommunicator.reduceScatterSum`), or with `wait` the blocking `reduceScatterSum` (for buckets filled at
    /// the very end of backward, as `GradientBuckets.bucketReady(_:wait:)`).
    /// - Throws: `DistributedError.invalidBucket` for an unknown index or one already started this step.
    public func bucketReady(_ index: Int, wait: Bool = false) throws {
        try progress.claim(index)
        let range = ranges[index]
        if let mpi, let requests, !wait {
            try requests.start { requests in
                for (owner, part) in bucketParts[index].enumerated() where !part.isEmpty {
                    try mpi.startReduceSum(buffer.baseAddress! + part.lowerBound, count: part.count, root: owner, appendingTo: &requests)
                }
            }
        } else {
            try communicator.reduceScatterSum(buffer.baseAddress! + range.lowerBound, counts: bucketParts[index].map(\.count))
        }
    }

    /// Whether bucket `index` was started (or skipped) this step.
    public func isStarted(_ index: Int) -> Bool { progress.isStarted(index) }

    /// Leaves bucket `index` out of this step's exchange, for a range that no worker wrote this step (every
    /// worker's gradients there are the same zeros): this worker's own gradients there are what the sum would
    /// be, and stay. Every worker must skip the same buckets.
    /// - Throws: `DistributedError.invalidBucket` for an unknown index or one already started this step.
    public func skip(_ index: Int) throws {
        try progress.claim(index, skipping: true)
    }

    /// Tests the buckets in flight once, which lets MPI progress them. Cheap; call it often during backward.
    /// - Returns: true when nothing is in flight any more.
    @discardableResult
    public func poll() throws -> Bool {
        try requests?.poll() ?? true
    }

    /// Ends the progress thread's help for this step (see `GradientBuckets.handBack()`).
    public func handBack() throws {
        try requests?.handBack()
    }

    /// Waits for every bucket; then `shardSums` holds the sum over the workers of this worker's shard.
    /// Afterwards the next step may start buckets again.
    /// - Throws: `DistributedError.bucketsNotStarted` if some bucket was never started this step.
    public func finish() throws {
        try progress.checkAllStarted()
        try requests?.wait("ShardedGradientBuckets.finish")
        progress.reset()
    }

    /// The comparison mode (`gradient_sync: single`): one blocking reduce-scatter of the whole buffer after
    /// backward. Ignores the buckets; do not mix with `bucketReady` in one step.
    public func reduceScatterAll() throws {
        try communicator.reduceScatterSum(buffer.baseAddress!, counts: shards.map(\.count))
    }
}

/// What training needs of a bucketed gradient exchange, whether every worker gets the whole sum
/// (`GradientBuckets`) or each the sum of its own shard (`ShardedGradientBuckets`). The sums are left unscaled:
/// training folds 1 / workers into the optimizer step.
public protocol BucketedGradientSum: AnyObject {
    /// Starts bucket `index` (non-blocking over MPI, unless `wait`).
    func bucketReady(_ index: Int, wait: Bool) throws
    /// Whether bucket `index` was started (or skipped) this step.
    func isStarted(_ index: Int) -> Bool
    /// Leaves bucket `index` out: a range no worker wrote this step.
    func skip(_ index: Int) throws
    /// Lets MPI progress the buckets in flight; true when none is left.
    @discardableResult func poll() throws -> Bool
    /// Ends the progress thread's help: before the caller's own MPI calls while buckets are in flight.
    func handBack() throws
    /// Whether a progress thread moves the buckets in flight.
    var hasProgressThread: Bool { get }
    /// Waits for every bucket of the step.
    func finishSum() throws
    /// One blocking exchange of the whole buffer after backward (`gradient_sync: single`).
    func sumAll() throws
}

extension GradientBuckets: BucketedGradientSum {
    public func finishSum() throws { try finish(averaging: false) }
    public func sumAll() throws { try allreduceAll(averaging: false) }
}

extension ShardedGradientBuckets: BucketedGradientSum {
    public func finishSum() throws { try finish() }
    public func sumAll() throws { try reduceScatterAll() }
}
