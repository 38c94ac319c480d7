/// Global gradient norm and clipping by it, as `torch.nn.utils.clip_grad_norm_`.
///
/// With all gradients in one buffer, the global norm over every parameter is a single call; the workers
/// compute it after the allreduce, so every replica clips by the same factor.
public enum GradientClipping {
    /// Values per chunk of the norm's sum; fixed, so the sum's order does not depend on the thread count.
    static let chunkSize = 1 << 16

    /// L2 norm of `count` values, accumulated in Double: `squaredNorm`'s square root, in Float.
    /// A NaN or infinite gradient gives a non-finite norm, which the caller can use to skip the step.
    public static func globalNorm(_ gradients: UnsafePointer<Float>, count: Int) -> Float {
        Float(squaredNorm(gradients, count: count).squareRoot())
    }

    /// The sum of the squares of `count` values, in Double. Sharded optimizer state adds the workers' sums of
    /// their shards (an allreduce) and takes the root: the global norm without gathering the gradients.
    ///
    /// Chunks of `chunkSize` values are summed on `ComputeThreads`, each with four independent partial sums
    /// (so the additions do not wait on each other; a GPT-2 small gradient is 124M values); the chunks' sums
    /// are then added in order, so the result does not depend on the thread count.
    public static func squaredNorm(_ gradients: UnsafePointer<Float>, count: Int) -> Double {
        let chunks = Parallel.chunking(count: count, minimumChunk: chunkSize).chunks
        guard chunks > 0 else { return 0 }
        return withUnsafeTemporaryAllocation(of: Double.self, capacity: chunks) { sums in
            let sums = sums.baseAddress!
            Parallel.forEachChunk(count, minimumChunk: chunkSize) { chunk, range in
                sums[chunk] = sumOfSquares(gradients + range.lowerBound, count: range.count)
            }
            var total = 0.0
            for chunk in 0..<chunks { total += sums[chunk] }
            return total
        }
    }

    /// PyTorch's clipping factor `maxNorm / (norm + 1e-6)`, in Float as PyTorch computes it on a float32 norm.
    /// When it is 1 or more, clipping leaves the gradients as they are, so it is returned as exactly 1.
    /// A non-finite `norm` gives 0 (infinite norm) or NaN, which callers that check `norm.isFinite` first
    /// never use.
    public static func factor(norm: Float, maxNorm: Float) -> Float {
        let coefficient = maxNorm / (norm + 1e-6)
        return coefficient >= 1 ? 1 : coefficient
    }

    /// Scales `gradients` by `factor(norm:maxNorm:)`, PyTorch's rule; returns the factor used. With a factor
    /// of 1 the gradients are left untouched (PyTorch multiplies by 1.0, the same values).
    @discardableResult
    public static func clip(
        _ gradients: UnsafeMutablePointer<Float>, count: Int, norm: Float, maxNorm: Float
    ) -> Float {
        let coefficient = factor(norm: norm, maxNorm: maxNorm)
        guard coefficient != 1 else { return 1 }
        Parallel.forEachRange(count, minimumChunk: chunkSize) { range in
            for i in range { gradients[i] *= coefficient }
        }
        return coefficient
    }

    /// Σ x² of `count` values in Double, four partial sums.
    private static func sumOfSquares(_ values: UnsafePointer<Float>, count: Int) -> Double {
        var s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0
        let blocked = count & ~3
        var i = 0
        while i < blocked {
            let a = Double(values[i]), b = Double(values[i &+ 1])
            let c = Double(values[i &+ 2]), d = Double(values[i &+ 3])
            s0 += a * a
            s1 += b * b
            s2 += c * c
            s3 += d * d
            i &+= 4
        }
        while i < count {
            let a = Double(values[i])
            s0 += a * a
            i &+= 1
        }
        return (s0 + s1) + (s2 + s3)
    }
}
