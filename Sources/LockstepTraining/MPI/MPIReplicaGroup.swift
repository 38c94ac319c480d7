import Foundation
import LockstepData
import LockstepDistributed
import LockstepKernels
import LockstepModel
import LockstepConfig
import LockstepLogging
import LockstepCheckpoints

/// Sums gradients over the workers' communicator, in buckets: block L-1 down to 0 as backward finishes
/// each (non-blocking allreduces overlap the rest of backward), then the embeddings and final LayerNorm,
/// whose gradients are complete only at the end. `gradient_sync: single` does one allreduce after backward.
public final class MPIReplicaGroup: ReplicaGroup {
    let communicator: any Communicator
    let buckets: GradientBuckets
    let layerCount: Int
    let bucketed: Bool

    public init(communicator: any Communicator, model: GPT, bucketed: Bool) throws {
        self.communicator = communicator
        self.bucketed = bucketed
        let layout = model.layout
        layerCount = layout.config.layerCount
        var ranges = (0..<layerCount).reversed().map { layout.blockRange($0) }
        ranges.append(0..<layout.blockRange(0).lowerBound)
        ranges.append(layout.blockRange(layerCount - 1).upperBound..<layout.count)
        buckets = try GradientBuckets(communicator: communicator, buffer: model.gradients, ranges: ranges)
    }

    public var replicaCount: Int { communicator.size }
    public var replicaIndex: Int { communicator.rank }

    /// The first error of `bucketReady` inside backward, thrown by `finishGradientSum`.
    private var bucketError: Error?

    public func blockGradientsReady(_ block: Int) {
        guard bucketed, bucketError == nil else { return }
        // A callback inside backward cannot throw: keep the error for `finishGradientSum`.
        do {
            try buckets.bucketReady(layerCount - 1 - block)
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
                try buckets.finish(averaging: false)
                return 1 / Float(communicator.size)
            }
            // The embeddings and ln_f are complete only now, so nothing is left to overlap with them.
            try buckets.bucketReady(layerCount, wait: true)
            try buckets.bucketReady(layerCount + 1, wait: true)
            try buckets.finish(averaging: false)
        } else {
            try buckets.allreduceAll(averaging: false)
        }
        return 1 / Float(communicator.size)
    }

    public func allAgree(_ flag: Bool) throws -> Bool {
        try communicator.allAgree(flag: flag)
    }

    /// The sum over the workers, then worker 0's result broadcast: the same bits everywhere, whatever order
    /// the reduction added in.
    public func mean(_ value: Double) throws -> Double {
        var sum = value
        try communicator.allreduceSum(&sum, count: 1)
        var mean = sum / Double(communicator.size)
        try communicator.broadcast(&mean, byteCount: MemoryLayout<Double>.size, root: 0)
        return mean
    }

    public func verifyReplicas(parameters: UnsafeMutableBufferPointer<Float>, step: Int) throws {
        try communicator.verifyReplicasAgree(checksum: parameterChecksum(parameters), step: step)
    }
}
