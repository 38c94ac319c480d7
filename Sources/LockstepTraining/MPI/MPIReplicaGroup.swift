import Foundation
import LockstepData
import LockstepDistributed
import LockstepKernels
import LockstepModel
import LockstepConfig
import LockstepLogging
import LockstepCheckpoints
import LockstepOptimizer

/// Sums gradients over the workers' communicator in buckets that start as soon as backward has made them final,
/// and progress while backward goes on (`BackwardEvents.progress` polls them between kernels):
/// - the head's and `ln_f`'s gradients, and the tied `wte` table's, right after the head's backward. The token
///   lookup's share of `wte` comes only at the very end of backward, so each worker defers it
///   (`BackwardEvents.defersTokenLookup`) and the workers exchange those few rows (one per token of the
///   micro-batch) after backward instead of the whole table; every worker then adds all of them, in worker
///   order, to the summed table. Where the rows would outweigh the table (many workers, long micro-batches),
///   `wte` goes with `wpe` at the end instead;
/// - block L-1 down to 0, each as its backward finishes;
/// - `wpe`, final only on return, with the blocking allreduce.
/// `gradient_sync: single` does one allreduce of the whole buffer after backward instead.
///
/// With `distributed.shard_optimizer` (ZeRO-1) the same buckets are reduce-scattered instead
/// (`ShardedGradientBuckets`): each worker receives the sum of its own shard of the gradients, updates that
/// shard of the parameters, and `shareUpdatedParameters` all-gathers them. When the workers share one host
/// (`SharedTrainingMemory`), no gradient or parameter goes through MPI at all: after backward each worker adds
/// its shard of every worker's gradients, read in place, into its own, and after the update a barrier publishes
/// the one shared parameter copy.
public final class MPIReplicaGroup: ReplicaGroup {
    let communicator: any Communicator
    let buckets: any BucketedGradientSum
    /// The reduce-scatter buckets when the optimizer state is sharded (the same object as `buckets`).
    let sharded: ShardedGradientBuckets?
    let bucketCount: Int
    let model: GPT
    let layerCount: Int
    let bucketed: Bool
    /// Parameters and gradients in memory shared by the workers of one host (sharded optimizer state only).
    let shared: SharedTrainingMemory?
    /// Whether the last micro-step's backward defers the token lookup's rows (see the type's comment).
    let defersTokenLookup: Bool
    /// The deferred lookup rows of every worker, slot w for worker w: `(workers, rowCapacity, C)` rows and
    /// `(workers, 1 + rowCapacity)` row counts and token ids (as Doubles: exact, and summed by the same
    /// allreduce as the counts). Each worker fills its slot, zeros elsewhere, so the sum is everyone's rows.
    private var lookupRows: [Float] = []
    private var lookupTokens: [Double] = []
    private var tokenScratch: [Int32] = []
    /// Most rows one backward can defer: the model's largest micro-batch, in tokens.
    private let rowCapacity: Int

    private enum Bucket {
        static let head = 0
        static let tokenTable = 1
        static func block(_ l: Int, layerCount: Int) -> Int { 2 + (layerCount - 1 - l) }
        /// GPT-2's position table, last; a model with rotary positions has none.
        static func positionTable(layerCount: Int) -> Int { 2 + layerCount }
    }

    /// Whether the model has a position table, and so the `Bucket.positionTable` bucket.
    private let hasPositionTable: Bool

    /// - Parameters:
    ///   - sharded: reduce-scatter the gradients, for an optimizer that owns this worker's shard only.
    ///   - progressThread: the buckets in flight move from a thread of their own (`BucketRequests`).
    ///   - shared: with `sharded`, the memory `model`'s parameters and gradients live in, shared by all workers.
    public init(
        communicator: any Communicator, model: GPT, bucketed: Bool, sharded: Bool = false, progressThread: Bool = false,
        shared: SharedTrainingMemory? = nil
    ) throws {
        self.communicator = communicator
        self.shared = sharded ? shared : nil
        // Shared memory: the sums happen after backward, with nothing in flight during it.
        let bucketed = bucketed && self.shared == nil
        self.bucketed = bucketed
        self.model = model
        let layout = model.layout
        let config = layout.config
        layerCount = config.layerCount
        let wteRange = layout.tokenTableRange
        let tail = layout.blockRange(layerCount - 1).upperBound..<layout.count
        var ranges = [tail, wteRange]
        ranges += (0..<layerCount).reversed().map { layout.blockRange($0) }
        hasPositionTable = layout.positionTableRange != nil
        if let wpeRange = layout.positionTableRange { ranges.append(wpeRange) }
        bucketCount = ranges.count
        if sharded {
            let shardedBuckets = try ShardedGradientBuckets(
                communicator: communicator, buffer: model.gradients, ranges: ranges, progressThread: bucketed && progressThread)
            self.sharded = shardedBuckets
            buckets = shardedBuckets
        } else {
            self.sharded = nil
            buckets = try GradientBuckets(
                communicator: communicator, buffer: model.gradients, ranges: ranges, progressThread: bucketed && progressThread)
        }
        rowCapacity = model.batchSize * model.sequenceLength
        let (exchanged, overflow) = communicator.size.multipliedReportingOverflow(by: rowCapacity)
        // Shared memory defers the rows too, so that its sums add in the replicated run's order.
        defersTokenLookup = (bucketed || self.shared != nil) && communicator.size > 1 && !overflow
            && exchanged <= config.vocabularySize
        if defersTokenLookup {
            lookupRows = [Float](repeating: 0, count: exchanged * config.channels)
            lookupTokens = [Double](repeating: 0, count: communicator.size * (1 + rowCapacity))
            tokenScratch = [Int32](repeating: 0, count: rowCapacity)
        }
    }

    /// Whether a progress thread moves the buckets in flight (`distributed.progress_thread`, granted by MPI).
    public var hasProgressThread: Bool { buckets.hasProgressThread }

    public var replicaCount: Int { communicator.size }
    public var replicaIndex: Int { communicator.rank }

    /// The first error of a bucket call inside backward, thrown by `finishGradientSum`.
    private var bucketError: Error?

    /// Runs `call` inside backward, where nothing can throw: keeps its first error for `finishGradientSum`.
    private func recording(_ call: () throws -> Void) {
        guard bucketError == nil else { return }
        do { try call() } catch { bucketError = error }
    }

    public var backwardEvents: BackwardEvents {
        if shared != nil { return BackwardEvents(defersTokenLookup: defersTokenLookup) }
        guard bucketed else { return BackwardEvents() }
        return BackwardEvents(
            headReady: { [self] in
                recording {
                    try buckets.bucketReady(Bucket.head, wait: false)
                    if defersTokenLookup { try buckets.bucketReady(Bucket.tokenTable, wait: false) }
                }
            },
            blockReady: { [self] l in
                recording { try buckets.bucketReady(Bucket.block(l, layerCount: layerCount), wait: false) }
            },
            progress: { [self] in recording { try buckets.poll() } },
            defersTokenLookup: defersTokenLookup)
    }

    /// The sends of a checkpoint handoff in flight from this worker's parameters and moments, over the world
    /// communicator (`startHandoff`); empty when none.
    private var handoff = PendingTransfers()
    private var handoffCommunicator: (any Communicator)?
    public private(set) var handoffWaitSeconds = 0.0

    /// Starts this worker's side of a checkpoint handoff (`start` adds the sends to the transfers), which then
    /// overlaps the next step's forward and backward: on one host the coordinator copies the bytes out on its
    /// own CPU. `finishGradientSum` completes the sends first, before this or, in shared memory, any other
    /// worker can change the buffers, or else `finishHandoff` (a roll-back, the end of the run).
    public func startHandoff(
        over world: any Communicator, _ start: (inout PendingTransfers) throws -> Void
    ) throws {
        _ = try finishHandoff()
        handoffCommunicator = world
        try start(&handoff)
    }

    /// Completes the handoff in flight, if any.
    /// - Returns: the seconds it waited.
    public func finishHandoff() throws -> Double {
        guard let world = handoffCommunicator else { return 0 }
        let phase = world.phase
        world.phase = "checkpoint handoff's sends, before \(phase)"
        defer { world.phase = phase }
        let started = monotonicSeconds()
        try world.finish(&handoff)
        handoffCommunicator = nil
        return monotonicSeconds() - started
    }

    public func finishGradientSum() throws -> Float {
        if let error = bucketError {
            bucketError = nil
            try? buckets.handBack()
            throw error
        }
        // From here this thread makes MPI calls of its own: the progress thread, if any, stops.
        try buckets.handBack()
        // Before the update, and in shared memory before the barrier after which the others update theirs.
        handoffWaitSeconds = try finishHandoff()
        if let shared, let sharded {
            try shared.synchronize()
            Self.addShard(sharded.shard, of: shared.gradients, into: shared.rank)
            if defersTokenLookup {
                try exchangeTokenLookups()
                addTokenLookups(within: sharded.shard)
            }
            return 1 / Float(communicator.size)
        }
        guard bucketed else {
            try buckets.sumAll()
            return 1 / Float(communicator.size)
        }
        if !buckets.isStarted(Bucket.head) {
            // A head-only backward (classification.freeze_backbone) never reaches the trunk: the blocks' and
            // embeddings' gradients stay the zeros of `zeroGradients` on every worker (all run the same task), so
            // their sum is zero too and is not worth sending.
            for bucket in 0..<bucketCount where bucket != Bucket.head { try buckets.skip(bucket) }
            try buckets.bucketReady(Bucket.head, wait: true)
            try buckets.finishSum()
            return 1 / Float(communicator.size)
        }
        if !defersTokenLookup { try buckets.bucketReady(Bucket.tokenTable, wait: true) }
        if hasPositionTable { try buckets.bucketReady(Bucket.positionTable(layerCount: layerCount), wait: true) }
        if defersTokenLookup { try exchangeTokenLookups() }
        try buckets.finishSum()
        // Sharded, only this worker's shard of wte holds sums; rows added elsewhere land in gradients no one reads.
        if defersTokenLookup { addTokenLookups(within: nil) }
        return 1 / Float(communicator.size)
    }

    /// Adds `shard` of every worker's gradients, in rank order, into worker `me`'s own (the sum an in-process
    /// group computes; with two workers also MPI's, as a + b = b + a).
    private static func addShard(_ shard: Range<Int>, of gradients: [UnsafeMutableBufferPointer<Float>], into me: Int) {
        let sources = gradients.compactMap { $0.baseAddress.map { UnsafePointer($0 + shard.lowerBound) } }
        guard sources.count == gradients.count, sources.count > 1, !shard.isEmpty,
            let own = gradients[me].baseAddress.map({ $0 + shard.lowerBound })
        else { return }
        if sources.count == 2 {
            Residual.forward(out: own, a: sources[0], b: sources[1], count: shard.count)
            return
        }
        for i in 0..<shard.count {
            var sum = sources[0][i]
            for source in sources.dropFirst() { sum += source[i] }
            own[i] = sum
        }
    }

    /// Sums every worker's deferred lookup rows into `lookupRows` / `lookupTokens` (each worker's in its slot).
    private func exchangeTokenLookups() throws {
        let (tokens, rows) = model.deferredTokenLookup
        let C = model.config.channels, me = communicator.rank
        lookupRows.withUnsafeMutableBufferPointer { all in
            all.update(repeating: 0)
            _ = UnsafeMutableBufferPointer(rebasing: all[(me * rowCapacity * C)...]).update(fromContentsOf: rows)
        }
        lookupTokens.withUnsafeMutableBufferPointer { all in
            all.update(repeating: 0)
            let slot = me * (1 + rowCapacity)
            all[slot] = Double(tokens.count)
            for (i, token) in tokens.enumerated() { all[slot + 1 + i] = Double(token) }
        }
        try lookupTokens.withUnsafeMutableBufferPointer { try communicator.allreduceSum($0.baseAddress!, count: $0.count) }
        try lookupRows.withUnsafeMutableBufferPointer { try communicator.allreduceSum($0.baseAddress!, count: $0.count) }
    }

    /// Adds the exchanged lookup rows to the summed `wte` gradient, worker 0's first, so every worker adds the
    /// same numbers in the same order. `within`: only the elements in this range of the gradient buffer (shared
    /// memory: the other workers may still be reading the rest of this worker's gradients); each element gets
    /// the same additions in the same order as `Embedding.backward` gives it.
    private func addTokenLookups(within limit: Range<Int>?) {
        let C = model.config.channels
        let wte = model.gradients.baseAddress! + model.layout.wte
        for worker in 0..<communicator.size {
            let slot = worker * (1 + rowCapacity)
            let count = Int(lookupTokens[slot])
            if count == 0 { continue }
            for i in 0..<count { tokenScratch[i] = Int32(lookupTokens[slot + 1 + i]) }
            lookupRows.withUnsafeBufferPointer { rows in
                let workerRows = rows.baseAddress! + worker * rowCapacity * C
                guard let limit else {
                    Embedding.backward(
                        dWte: wte, dWpe: nil, dOut: workerRows, tokens: tokenScratch, batch: 1, time: count, channels: C)
                    return
                }
                let gradients = model.gradients.baseAddress!
                for n in 0..<count {
                    let start = model.layout.wte + Int(tokenScratch[n]) * C
                    let columns = (start..<(start + C)).clamped(to: limit)
                    for i in columns { gradients[i] += workerRows[n * C + i - start] }
                }
            }
        }
    }

    public func allAgree(_ flag: Bool) throws -> Bool {
        try communicator.allAgree(flag: flag)
    }

    /// The sum over the workers, then worker 0's result broadcast: the same bits everywhere, whatever order
    /// the reduction added in.
    public func mean(_ value: Double) throws -> Double {
        try agreedSum(value) / Double(communicator.size)
    }

    /// The sum of `value` over the workers, worker 0's result broadcast: the same bits everywhere, whatever
    /// order MPI's reduction added in on each worker.
    private func agreedSum(_ value: Double) throws -> Double {
        var sum = value
        try communicator.allreduceSum(&sum, count: 1)
        try communicator.broadcast(&sum, byteCount: MemoryLayout<Double>.size, root: 0)
        return sum
    }

    public var gradientShard: (range: Range<Int>, sums: UnsafeMutableBufferPointer<Float>)? {
        sharded.map { ($0.shard, $0.shardSums) }
    }

    /// Sharded: the square root of the workers' shards' squared norms added up (in Double), so no worker needs
    /// the whole gradient. The additions group differently from the whole buffer's sum, so the norm may differ
    /// from the replicated run's in its last bit (docs/ARCHITECTURE.md, "Sharded optimizer state").
    public func meanGradientNorm(gradientSum: UnsafeMutableBufferPointer<Float>, meanFactor: Float) throws -> Float {
        guard sharded != nil else { return AdamWOptimizer.meanGradientNorm(gradientSum: gradientSum, meanFactor: meanFactor) }
        let squares = gradientSum.baseAddress.map { GradientClipping.squaredNorm($0, count: gradientSum.count) } ?? 0
        return Float(try agreedSum(squares).squareRoot()) * meanFactor
    }

    public func shareUpdatedParameters(_ parameters: UnsafeMutableBufferPointer<Float>) throws {
        if let shared {
            // Every shard of the one copy is written: visible to all before anyone reads the parameters, and no
            // worker reads another's gradients after this.
            try shared.synchronize()
            return
        }
        guard let sharded, let base = parameters.baseAddress else { return }
        try communicator.allgather(base, counts: sharded.shards.map(\.count))
    }

    public func shareParts(_ buffer: UnsafeMutableBufferPointer<Float>, counts: [Int]) throws {
        guard let base = buffer.baseAddress, counts.reduce(0, +) == buffer.count else {
            throw DistributedError.invalidCounts(call: "shareParts", counts: counts, size: communicator.size)
        }
        try communicator.allgather(base, counts: counts)
    }

    public func verifyReplicas(parameters: UnsafeMutableBufferPointer<Float>, step: Int) throws {
        try communicator.verifyReplicasAgree(checksum: parameterChecksum(parameters), step: step)
    }
}
