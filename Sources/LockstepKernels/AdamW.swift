import RealModule

/// AdamW with decoupled weight decay and bias correction, as PyTorch's `torch.optim.AdamW`.
///
/// Works on one contiguous range of parameters; parameter groups (decay on for matrices, off for biases
/// and LayerNorm) are separate calls with their own `weightDecay`.
public struct AdamWSettings: Sendable, Equatable, Codable {
    public var beta1: Float
    public var beta2: Float
    public var epsilon: Float
    public var weightDecay: Float

    public init(beta1: Float = 0.9, beta2: Float = 0.95, epsilon: Float = 1e-8, weightDecay: Float = 0.1) {
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
    }
}

public enum AdamW {
    /// One update of `count` parameters in place. `step` is 1-based (bias correction uses it);
    /// `m`, `v` are the first and second moments, same layout as `parameters`.
    ///
    /// Per element, in PyTorch's order (`torch/optim/adamw.py`, single-tensor path):
    /// 1. `g ← gradientScale · g` (gradient clipping's factor, applied here so the gradients are not
    ///    rewritten in a pass of their own; 1 leaves them as they are);
    /// 2. `p ← p · (1 − lr·wd)` when `applyWeightDecay` (decoupled: the decay never enters `m` or `v`);
    /// 3. `m ← β1·m + (1 − β1)·g`, `v ← β2·v + (1 − β2)·g²`;
    /// 4. `p ← p − (lr / (1 − β1ᵗ)) · m / (√v / √(1 − β2ᵗ) + ε)`,
    ///    which is `p − lr · m̂ / (√v̂ + ε)` with `m̂ = m / (1 − β1ᵗ)`, `v̂ = v / (1 − β2ᵗ)`.
    /// The bias corrections are computed once per call in Double, as PyTorch does in Python floats.
    /// - Complexity: one pass over four arrays, memory-bound; spread over `ComputeThreads` in chunks.
    public static func update(
        parameters: UnsafeMutablePointer<Float>, gradients: UnsafePointer<Float>,
        m: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>, count: Int,
        step: Int, learningRate: Float, settings: AdamWSettings, applyWeightDecay: Bool, gradientScale: Float = 1
    ) {
        precondition(step >= 1, "AdamW.update: step is 1-based, got \(step)")
        let beta1 = settings.beta1, beta2 = settings.beta2, epsilon = settings.epsilon
        let oneMinusBeta1 = 1 - beta1, oneMinusBeta2 = 1 - beta2
        let decay: Float = applyWeightDecay ? 1 - learningRate * settings.weightDecay : 1
        let correction1 = 1 - Double.pow(Double(beta1), step)
        let correction2 = 1 - Double.pow(Double(beta2), step)
        let stepSize = Float(Double(learningRate) / correction1)
        let inverseSqrtCorrection2 = Float(1 / correction2.squareRoot())
        Parallel.forEachRange(count, minimumChunk: 1 << 15) { range in
            // Eight at a time with explicit vectors: the compiler cannot prove the four arrays apart.
            var i = range.lowerBound
            while i < range.upperBound {
                let lanes = min(8, range.upperBound &- i)
                let g = VectorMath.load(gradients + i, count: lanes) * gradientScale
                let mi = beta1 * VectorMath.load(m + i, count: lanes) + oneMinusBeta1 * g
                let vi = beta2 * VectorMath.load(v + i, count: lanes) + oneMinusBeta2 * g * g
                VectorMath.store(mi, to: m + i, count: lanes)
                VectorMath.store(vi, to: v + i, count: lanes)
                let denominator = vi.squareRoot() * inverseSqrtCorrection2 + epsilon
                let updated = VectorMath.load(parameters + i, count: lanes) * decay - stepSize * mi / denominator
                VectorMath.store(updated, to: parameters + i, count: lanes)
                i &+= 8
            }
        }
    }
}
