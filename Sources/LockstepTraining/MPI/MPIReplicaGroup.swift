import Foundation
import LockstepData
import LockstepDistributed
import LockstepKernels
import LockstepModel
import LockstepConfig
import LockstepLogging
import LockstepCheckpoints
import LockstepOptimizer

/// Sums gradients over the workers' communicator, in buckets: block L-1 down to 0 as backward finishes
/// each (non-blocking allreduces overlap the rest of backward), then the embeddings and final LayerNorm,
/// whose gradients are complete only at the end. `gradient_sync: single` does one allreduce after backward.
///
/// With `distributed.shard_optimizer` (ZeRO-1) the same buckets are reduce-scattered instead
/// (`ShardedGradientBuckets`): each worker receives the sum of its own shard of the gradients, updates that
/// shard of the parameters, and `shareUpdatedParameters` all-gathers them.
public final class MPIReplicaGroup: ReplicaGroup {
    let communicator: any Communicator
    let buckets: any BucketedGradientSum
    /// The reduce-scatter buckets when the optimizer state is sharded (the same object as `buckets`).
    let sharded: ShardedGradientBuckets?
    let layerCount: Int
    let bucketed: Bool

    /// - Parameter sharded: reduce-scatter the gradients, for an optimizer that owns this worker's shard only.
    public init(communicator: any Communicator, model: GPT, bucketed: Bool, sharded: Bool = false) throws {
        self.communicator = communicator
        self.bucketed = bucketed
        let layout = model.layout
        layerCount = layout.config.layerCount
        var ranges = (0..<layerCount).reversed().map { layout.blockRange($0) }
        ranges.append(0..<layout.blockRange(0).lowerBound)
        ranges.append(layout.blockRange(layerCount - 1).upperBound..<layout.count)
        if sharded {
            let shardedBuckets = try ShardedGradientBuckets(communicator: communicator, buffer: model.gradients, ranges: ranges)
            self.sharded = shardedBuckets
            buckets = shardedBuckets
        } else {
            self.sharded = nil
            buckets = try GradientBuckets(communicator: communicator, buffer: model.gradients, ranges: ranges)
        }
    }

    public var replicaCount: Int { communicator.size }
    public var replicaIndex: Int { communicator.rank }

    /// The first error of `bucketReady` inside backward, thrown by `finishGradientSum`.
    private var bucketError: Error?

    public func blockGradientsReady(_ block: Int) {
        guard bucketed, bucketError == nil else { return }
        // A callback inside backward cannot throw: keep the error for `finishGradientSum`.
        do {
            try buckets.bucketReady(layerCount - 1 - block, wait: false)
        } catch {
            bucketError = error
        }
    }

    public func finishGradientSum() throws -> Float {
        if let error = bucketError {
            bucketError = nil
            throw error
        }
        if bucketed {
            if layerCount > 0, (0..<layerCount).allSatisfy({ !buckets.isStarted($0) }) {
                // A head-only backward (classification.freeze_backbone) never reaches the trunk: no block
                // signalled, and the blocks' and embeddings' gradients stay the zeros of `zeroGradients` on every
                // worker (all run the same task), so their sum is zero too and is not worth sending.
                for bucket in 0...layerCount { try buckets.skip(bucket) }
                try buckets.bucketReady(layerCount + 1, wait: true)
                try buckets.finishSum()
                return 1 / Float(communicator.size)
            }
            // The embeddings and ln_f are complete only now, so nothing is left to overlap with them.
            try buckets.bucketReady(layerCount, wait: true)
            try buckets.bucketReady(layerCount + 1, wait: true)
            try buckets.finishSum()
        } else {
            try buckets.sumAll()
        }
        return 1 / Float(communicator.size)
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
        guard let sharded, let base = parameters.baseAddress else { return }
        try communicator.allgather(base, counts: sharded.shards.map(\.count))
    }

    public func verifyReplicas(parameters: UnsafeMutableBufferPointer<Float>, step: Int) throws {
        try communicator.verifyReplicasAgree(checksum: parameterChecksum(parameters), step: step)
    }
}
