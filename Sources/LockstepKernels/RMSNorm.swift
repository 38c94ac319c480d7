import RealModule

/// Root-mean-square normalisation over the channel axis, Llama's `LlamaRMSNorm` in float32:
/// `out = x·rstd·weight` per row, with `rstd = 1/√(mean(x²) + eps)`. Unlike LayerNorm there is no mean
/// subtracted and no bias.
///
/// Shapes: `input, out (N, C)`, `weight (C)`, saved statistic `rstd (N)` (kept for backward).
/// N is rows (B·T), C channels.
public enum RMSNorm {
    /// out = x · rstd · weight per row, rstd = 1/sqrt(mean(x²) + eps) (Hugging Face LlamaRMSNorm, float32).
    ///
    /// Overwrites `out` and `rstd`; `x·rstd` is rounded before the weight multiplies it, as Hugging Face's
    /// `weight * (x * rsqrt(...))` does. Rows are spread over `ComputeThreads`.
    public static func forward(
        out: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>,
        weight: UnsafePointer<Float>, rows: Int, channels: Int, eps: Float
    ) {
        let count = Float(channels)
        Parallel.forEachRange(rows, minimumChunk: rowsPerChunk(channels)) { range in
            for r in range {
                let x = input + r &* channels, y = out + r &* channels
                let squares = VectorMath.sum(channels) { i, lanes in
                    let v = VectorMath.load(x + i, count: lanes)
                    return v * v
                }
                let s = 1 / (squares / count + eps).squareRoot()
                for i in 0..<channels { y[i] = (x[i] * s) * weight[i] }
                rstd[r] = s
            }
        }
    }

    /// Accumulates into dInput (rows, C) and dWeight (C).
    ///
    /// Uses the `rstd` saved by forward. With `n = x·rstd` and `dn = weight·dOut`, per row:
    /// `dInput += rstd·(dn − n·mean(dn·n))` (the second term is the gradient through rstd, which depends on
    /// every x of the row), `dWeight += n·dOut`. `dInput` is spread over the cores by rows; `dWeight`, a sum
    /// over rows, by channels, each channel adding its rows in order (so the sum does not depend on the
    /// thread count).
    public static func backward(
        dInput: UnsafeMutablePointer<Float>, dWeight: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>,
        input: UnsafePointer<Float>, weight: UnsafePointer<Float>, rstd: UnsafePointer<Float>, rows: Int,
        channels: Int
    ) {
        let count = Float(channels)
        Parallel.forEachRange(rows, minimumChunk: rowsPerChunk(channels)) { range in
            for r in range {
                let x = input + r &* channels, dy = dOut + r &* channels, dx = dInput + r &* channels
                let s = rstd[r]
                let dnNormMean = VectorMath.sum(channels) { i, lanes in
                    VectorMath.load(weight + i, count: lanes) * VectorMath.load(dy + i, count: lanes)
                        * VectorMath.load(x + i, count: lanes) * s
                } / count
                for i in 0..<channels {
                    dx[i] += (weight[i] * dy[i] - x[i] * s * dnNormMean) * s
                }
            }
        }
        Parallel.forEachRange(channels, minimumChunk: max(8, (1 << 13) / max(1, rows))) { columns in
            for r in 0..<rows {
                let x = input + r &* channels, dy = dOut + r &* channels
                let s = rstd[r]
                for i in columns { dWeight[i] += x[i] * s * dy[i] }
            }
        }
    }

    /// Rows per chunk when spread over threads: about 8,192 values.
    private static func rowsPerChunk(_ channels: Int) -> Int { max(1, (1 << 13) / max(1, channels)) }

    /// The same formula in `T`, the oracle for tests. Returns `out (N, C)`.
    public static func forwardReference<T: Real>(
        input: [T], weight: [T], rows: Int, channels: Int, eps: T
    ) -> [T] {
        var out = [T](repeating: 0, count: rows * channels)
        for r in 0..<rows {
            let x = input[(r * channels)..<((r + 1) * channels)]
            let s = 1 / T.sqrt(x.reduce(0) { $0 + $1 * $1 } / T(channels) + eps)
            for i in 0..<channels {
                out[r * channels + i] = input[r * channels + i] * s * weight[i]
            }
        }
        return out
    }
}
