import LockstepKernels
import LockstepModel

/// AdamW over a whole parameter buffer, as PyTorch's `torch.optim.AdamW` with two parameter groups: weight
/// decay on tensors that `ParameterLayout.decays` selects (matrices), none on biases and LayerNorm.
///
/// The moments `m`, `v` use the parameters' layout, so checkpoints and broadcasts handle them as whole buffers.
/// With sharded optimizer state (ZeRO-1) an optimizer owns one contiguous `shard` of the parameters: it holds
/// moments for that range only and updates only it (every worker its own shard, then they all-gather).
///
/// Each tensor may scale the learning rate (`learningRateScale`), as PyTorch parameter groups with their own
/// `lr`: for fine-tuning, a smaller rate on the pretrained body than on a fresh head. Scale 0 freezes a tensor:
/// its parameters and moments never change, as a PyTorch parameter left out of the optimizer.
public final class AdamWOptimizer {
    public let layout: ParameterLayout
    /// The range of the parameter buffer this optimizer updates: all of it (`0 ..< layout.count`) unless its
    /// state is sharded over workers.
    public let shard: Range<Int>
    /// First moments of the parameters in `shard`: `shard.count` Floats, element i for parameter
    /// `shard.lowerBound + i` (the parameters' layout when `shard` is all of it).
    public let m: UnsafeMutableBufferPointer<Float>
    /// Second moments, as `m`.
    public let v: UnsafeMutableBufferPointer<Float>
    /// Steps taken so far; the next `step` uses `stepCount + 1` for bias correction. Restored from checkpoints.
    public var stepCount = 0
    /// Maximal runs of consecutive tensors that share a decay setting and a learning-rate scale, cut to `shard`,
    /// so a step is a few kernel calls. Ranges are of the parameter buffer. Frozen tensors (scale 0) are in no group.
    private let groups: [(range: Range<Int>, decays: Bool, scale: Float)]
    /// `learningRateScale` of each tensor, in `layout.tensors` order.
    private let scales: [Float]

    /// - Parameters:
    ///   - shard: the range of the parameters to update and hold moments for; nil: all of them.
    ///   - learningRateScale: the factor on the learning rate for each tensor, asked once here; 0 freezes the tensor.
    /// - Precondition: every scale is finite and not negative; `shard` lies within `0 ..< layout.count`
    ///   (both come from code, not input: `ShardedGradientBuckets.shards`).
    public init(layout: ParameterLayout, shard: Range<Int>? = nil, learningRateScale: (ParameterTensor) -> Float = { _ in 1 }) {
        let shard = shard ?? 0..<layout.count
        precondition(shard.lowerBound >= 0 && shard.upperBound <= layout.count, "shard \(shard) outside 0..<\(layout.count)")
        self.layout = layout
        self.shard = shard
        // At least one element, so an empty shard (fewer parameters than workers) still has an address.
        m = UnsafeMutableBufferPointer(start: .allocate(capacity: max(1, shard.count)), count: shard.count)
        m.initialize(repeating: 0)
        v = UnsafeMutableBufferPointer(start: .allocate(capacity: max(1, shard.count)), count: shard.count)
        v.initialize(repeating: 0)
        let scales = layout.tensors.map(learningRateScale)
        var groups: [(range: Range<Int>, decays: Bool, scale: Float)] = []
        for (tensor, scale) in zip(layout.tensors, scales) {
            precondition(scale >= 0 && scale.isFinite, "learning-rate scale \(scale) of \(tensor.name) must be finite and ≥ 0")
            let range = tensor.range.clamped(to: shard)
            if scale == 0 || range.isEmpty { continue }
            let decays = layout.decays(tensor)
            if let last = groups.last, last.decays == decays, last.scale == scale, last.range.upperBound == range.lowerBound {
                groups[groups.count - 1].range = last.range.lowerBound..<range.upperBound
            } else {
                groups.append((range, decays, scale))
            }
        }
        self.groups = groups
        self.scales = scales
    }

    /// The factor on the learning rate that `tensor` got in `init` (0: frozen).
    /// - Precondition: `tensor` is one of `layout.tensors`.
    public func learningRateScale(of tensor: ParameterTensor) -> Float {
        guard let index = layout.tensors.firstIndex(of: tensor) else {
            preconditionFailure("\(tensor.name) at offset \(tensor.offset) is not a tensor of this optimizer's layout")
        }
        return scales[index]
    }

    deinit {
        m.baseAddress?.deallocate()
        v.baseAddress?.deallocate()
    }

    /// Clears the moments and the step count (a fresh optimizer).
    public func reset() {
        m.update(repeating: 0)
        v.update(repeating: 0)
        stepCount = 0
    }

    /// One AdamW update of every parameter in `shard` in place, each tensor at `learningRate × learningRateScale(of:)`
    /// (weight decay too, as in a PyTorch group with that `lr`); frozen tensors are skipped.
    /// - Parameters:
    ///   - parameters: all `layout.count` parameters; only those in `shard` change.
    ///   - gradients: the gradients of `shard`, `shard.count` Floats (the whole gradient buffer when `shard` is all).
    ///   - gradientScale: multiplies every gradient as it is read (gradient clipping's factor from
    ///     `GradientClipping.factor`), leaving the gradient buffer itself unchanged.
    /// - Precondition: `parameters` has `layout.count` elements and `gradients` `shard.count`.
    public func step(
        parameters: UnsafeMutableBufferPointer<Float>, gradients: UnsafeMutableBufferPointer<Float>,
        learningRate: Float, settings: AdamWSettings, gradientScale: Float = 1
    ) {
        precondition(parameters.count == layout.count && gradients.count == shard.count, "buffers do not match the layout")
        stepCount += 1
        guard let p = parameters.baseAddress, let g = gradients.baseAddress, let m = m.baseAddress, let v = v.baseAddress
        else { return }
        for group in groups {
            let offset = group.range.lowerBound, shardOffset = offset - shard.lowerBound
            AdamW.update(
                parameters: p + offset, gradients: g + shardOffset, m: m + shardOffset, v: v + shardOffset,
                count: group.range.count,
                step: stepCount, learningRate: learningRate * group.scale, settings: settings,
                applyWeightDecay: group.decays, gradientScale: gradientScale)
        }
    }
}

extension AdamWOptimizer {
    /// One training step's update from gradients that hold the sum over the replicas (of `shard`: `shard.count`
    /// Floats): the mean's global norm is the sum's times `meanFactor` (1 / replicas); clipping to `maxNorm` (0: off) and the mean are folded into
    /// AdamW's `gradientScale`, so the gradients are read once and never rewritten.
    /// - Parameter norm: the mean's global norm, from `meanGradientNorm` (the caller checks it is finite on
    ///   every replica before updating).
    public func step(
        parameters: UnsafeMutableBufferPointer<Float>, gradientSum: UnsafeMutableBufferPointer<Float>, norm: Float,
        meanFactor: Float, maxNorm: Float, learningRate: Float, settings: AdamWSettings
    ) {
        let clipFactor = maxNorm > 0 ? GradientClipping.factor(norm: norm, maxNorm: maxNorm) : 1
        step(
            parameters: parameters, gradients: gradientSum, learningRate: learningRate, settings: settings,
            gradientScale: clipFactor * meanFactor)
    }

    /// The global L2 norm of the mean gradient, given the replicas' sum and `meanFactor` = 1 / replicas.
    public static func meanGradientNorm(gradientSum: UnsafeMutableBufferPointer<Float>, meanFactor: Float) -> Float {
        guard let base = gradientSum.baseAddress else { return 0 }
        return GradientClipping.globalNorm(base, count: gradientSum.count) * meanFactor
    }
}
