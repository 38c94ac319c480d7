/// Which gradient buckets a step has started or skipped: the bookkeeping that `GradientBuckets` (allreduce)
/// and `ShardedGradientBuckets` (reduce-scatter) share.
struct BucketProgress {
    /// The buckets, as ranges of the gradient buffer, in the order backward fills them.
    let ranges: [Range<Int>]
    private var started: [Bool]
    private(set) var skipped: [Bool]
    private var startedCount = 0

    /// - Parameter ranges: non-empty, non-overlapping ranges of a buffer of `bufferCount` elements.
    /// - Throws: `DistributedError.invalidBucketRange` naming the first bad range.
    init(ranges: [Range<Int>], bufferCount: Int) throws {
        for (index, range) in ranges.enumerated() {
            func invalid(_ reason: String) -> DistributedError {
                .invalidBucketRange(index: index, range: range, bufferCount: bufferCount, reason: reason)
            }
            if range.isEmpty { throw invalid("it is empty") }
            if range.lowerBound < 0 || range.upperBound > bufferCount { throw invalid("it lies outside the buffer") }
        }
        let byStart = ranges.indices.sorted { ranges[$0].lowerBound < ranges[$1].lowerBound }
        for (previous, next) in zip(byStart, byStart.dropFirst()) where ranges[previous].overlaps(ranges[next]) {
            throw DistributedError.invalidBucketRange(
                index: next, range: ranges[next], bufferCount: bufferCount,
                reason: "it overlaps bucket \(previous) (\(ranges[previous].lowerBound)..<\(ranges[previous].upperBound))")
        }
        self.ranges = ranges
        started = [Bool](repeating: false, count: ranges.count)
        skipped = [Bool](repeating: false, count: ranges.count)
    }

    /// Marks bucket `index` as started this step (`skipping`: left out of the sum).
    /// - Throws: `DistributedError.invalidBucket` for an unknown index or one already started this step.
    mutating func claim(_ index: Int, skipping: Bool = false) throws {
        guard ranges.indices.contains(index) else {
            throw DistributedError.invalidBucket(index: index, bucketCount: ranges.count, reason: "no such bucket")
        }
        guard !started[index] else {
            throw DistributedError.invalidBucket(
                index: index, bucketCount: ranges.count, reason: "already started this step (call finish() first)")
        }
        started[index] = true
        skipped[index] = skipping
        startedCount += 1
    }

    /// Whether bucket `index` was started (or skipped) this step.
    func isStarted(_ index: Int) -> Bool { started.indices.contains(index) && started[index] }

    /// - Throws: `DistributedError.bucketsNotStarted` if some bucket was never started this step.
    func checkAllStarted() throws {
        if startedCount != ranges.count {
            throw DistributedError.bucketsNotStarted(missing: started.indices.filter { !started[$0] })
        }
    }

    /// Forgets this step's marks, for the next step.
    mutating func reset() {
        for index in started.indices {
            started[index] = false
            skipped[index] = false
        }
        startedCount = 0
    }
}
