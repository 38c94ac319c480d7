import CMPI

/// Averages a gradient buffer across the workers in buckets, each started as soon as backward has filled it,
/// so communication overlaps the rest of backward.
///
/// Usage per step, on every worker, from the thread that initialised MPI:
/// ```
/// for layer in layers.reversed() {
///     backward(layer)
///     try buckets.bucketReady(bucketIndex(of: layer))   // starts MPI_Iallreduce on that range
///     try buckets.poll()                                // lets Open MPI progress what is in flight
/// }
/// try buckets.handBack()                                 // before MPI calls of the caller's own
/// try buckets.finish()                                   // waits for all, scales by 1 / workerCount
/// ```
/// Why `poll()`: Open MPI (4.1, `coll/libnbc`) advances a non-blocking collective only inside MPI calls made
/// by the process; with no call between `bucketReady` and `finish`, most of the transfer happens in `finish`
/// and nothing overlaps. Call it between layers (it costs one `MPI_Testall`). With `progressThread` a thread
/// tests the buckets in flight every 200 µs instead (`BucketRequests`), and `poll()` does nothing.
///
/// Every worker must start the buckets in the same order (MPI matches collectives by order). With a
/// non-MPI communicator (`LocalCommunicator`, or `InProcessCommunicator`'s threads) `bucketReady` takes the
/// blocking `allreduceSum` at once and nothing overlaps: the same sums, without MPI's requests.
public final class GradientBuckets {
    /// The buckets, as ranges of `buffer`, indexed in the order backward fills them (reverse layer order).
    public var ranges: [Range<Int>] { progress.ranges }
    private let communicator: any Communicator
    private let mpi: MPICommunicator?
    private let buffer: UnsafeMutableBufferPointer<Float>
    private var progress: BucketProgress
    /// The buckets in flight (nil without MPI).
    private let requests: BucketRequests?

    /// - Parameters:
    ///   - communicator: the workers' communicator (`ProcessGroups.workers`).
    ///   - buffer: the gradients, one block for all parameters; must outlive this object and stay untouched
    ///     between `bucketReady` of a range and `finish`.
    ///   - ranges: non-empty, non-overlapping ranges of `buffer`, in the order they become ready. They need
    ///     not cover the buffer; parts outside every range are neither reduced nor scaled by `finish`.
    ///   - progressThread: move the buckets in flight from a thread of their own rather than by `poll()`.
    /// - Throws: `DistributedError.invalidBucketRange` naming the first bad range.
    public init(
        communicator: any Communicator, buffer: UnsafeMutableBufferPointer<Float>, ranges: [Range<Int>],
        progressThread: Bool = false
    ) throws {
        progress = try BucketProgress(ranges: ranges, bufferCount: buffer.count)
        self.communicator = communicator
        let mpi = communicator as? MPICommunicator
        self.mpi = mpi
        self.buffer = buffer
        // One request per bucket, more only past Int32.max floats: no allocation during steps.
        requests = mpi.map { BucketRequests(mpi: $0, capacity: ranges.count * 2, progressThread: progressThread) }
    }

    deinit { requests?.stop() }

    /// Whether a progress thread moves the buckets in flight.
    public var hasProgressThread: Bool { requests?.hasThread ?? false }

    /// Starts averaging bucket `index`: a non-blocking in-place sum (`MPI_Iallreduce`), or with `wait` the
    /// blocking `MPI_Allreduce`, done on return. Use `wait` for buckets filled at the very end of backward:
    /// nothing is left to overlap with them, and Open MPI's blocking allreduce (with the ring algorithm that
    /// `lockstep train` selects) moves large buffers about twice as fast as the non-blocking one.
    /// - Throws: `DistributedError.invalidBucket` for an unknown index or one already started this step.
    public func bucketReady(_ index: Int, wait: Bool = false) throws {
        try progress.claim(index)
        let range = ranges[index]
        let base = buffer.baseAddress! + range.lowerBound
        if let mpi, let requests, !wait {
            try requests.start { try mpi.startAllreduceSum(base, count: range.count, appendingTo: &$0) }
        } else {
            try communicator.allreduceSum(base, count: range.count)
        }
    }

    /// Whether bucket `index` was started (or skipped) this step.
    public func isStarted(_ index: Int) -> Bool { progress.isStarted(index) }

    /// Leaves bucket `index` out of this step's sum without communicating: for a range that no worker wrote
    /// this step (e.g. a frozen trunk whose gradients stay zero), where the sum would change nothing. Every
    /// worker must skip the same buckets; `finish` then neither waits for nor scales it.
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

    /// Ends the progress thread's help for this step: call it before any MPI call of the caller's own while
    /// buckets are in flight (a blocking `bucketReady(_:wait:)` included). `finish` calls it too.
    public func handBack() throws {
        try requests?.handBack()
    }

    /// Waits for every bucket, then with `averaging` divides the reduced ranges by the number of workers, so
    /// each holds the mean gradient; without, they hold the sum (training folds the 1 / workers into the
    /// optimizer rather than spend a pass over the buffer on it). Afterwards the next step may start buckets again.
    /// - Throws: `DistributedError.bucketsNotStarted` if some bucket was never started this step.
    public func finish(averaging: Bool = true) throws {
        try progress.checkAllStarted()
        try requests?.wait("GradientBuckets.finish")
        if averaging { for (index, range) in ranges.enumerated() where !progress.skipped[index] { scale(range) } }
        progress.reset()
    }

    /// The comparison mode: one blocking allreduce of the whole buffer after backward (pieces only past
    /// Int32.max floats), then the mean when `averaging`. Ignores the buckets; do not mix with `bucketReady`
    /// in one step.
    public func allreduceAll(averaging: Bool = true) throws {
        try communicator.allreduceSum(buffer.baseAddress!, count: buffer.count)
        if averaging { scale(0..<buffer.count) }
    }

    private func scale(_ range: Range<Int>) {
        let size = communicator.size
        if size == 1 { return }
        let factor = 1 / Float(size)
        let base = buffer.baseAddress! + range.lowerBound
        for i in 0..<range.count { base[i] *= factor }
    }
}
