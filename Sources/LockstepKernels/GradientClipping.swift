/// Global gradient norm and clipping by it, as `torch.nn.utils.clip_grad_norm_`.
///
/// With all gradients in one buffer, the global norm over every parameter is a single call; the workers
/// compute it after the allreduce, so every replica clips by the same factor.
public enum GradientClipping {
    /// L2 norm of `count` values, accumulated in Double.
    ///
    /// Four independent partial sums, so the additions do not wait on each other (a GPT-2 small gradient
    /// is 124M values) and the result does not depend on thread count. A NaN or infinite gradient gives a
    /// non-finite norm, which the caller can use to skip the step.
    public static func globalNorm(_ gradients: UnsafePointer<Float>, count: Int) -> Float {
        var s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0
        let blocked = count & ~3
        var i = 0
        while i < blocked {
            let a = Double(gradients[i]), b = Double(gradients[i &+ 1])
            let c = Double(gradients[i &+ 2]), d = Double(gradients[i &+ 3])
            s0 += a * a
            s1 += b * b
            s2 += c * c
            s3 += d * d
            i &+= 4
        }
        while i < count {
            let a = Double(gradients[i])
            s0 += a * a
            i &+= 1
        }
        return Float(((s0 + s1) + (s2 + s3)).squareRoot())
    }

    /// Scales `gradients` by `min(1, maxNorm / (norm + 1e-6))`, PyTorch's rule; returns the factor used.
    ///
    /// The factor is computed in Float, as PyTorch does on a float32 norm. When it is 1 or more the gradients
    /// are left untouched (PyTorch multiplies by 1.0, the same values). A non-finite `norm` gives a factor of 0
    /// (infinite norm) or NaN, which is applied as PyTorch would and returned, so callers that check
    /// `norm.isFinite` first should skip the step instead of clipping.
    @discardableResult
    public static func clip(
        _ gradients: UnsafeMutablePointer<Float>, count: Int, norm: Float, maxNorm: Float
    ) -> Float {
        let coefficient = maxNorm / (norm + 1e-6)
        guard !(coefficient >= 1) else { return 1 }
        for i in 0..<count { gradients[i] *= coefficient }
        return coefficient
    }
}
