import RealModule

/// Layer normalisation over the channel axis: `out = (x − mean)·rstd·weight + bias` per row, with
/// `rstd = 1/√(var + eps)` and the biased variance (divided by C), as PyTorch's `nn.LayerNorm`.
///
/// Shapes: `input, out (N, C)`, `weight, bias (C)`, saved statistics `mean, rstd (N)` (kept for backward).
/// N is rows (B·T), C channels.
public enum LayerNorm {
    /// Overwrites `out`, `mean` and `rstd`.
    public static func forward(
        out: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>,
        input: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>,
        rows: Int, channels: Int, eps: Float = 1e-5
    ) {
        let count = Float(channels)
        for r in 0..<rows {
            let x = input + r &* channels, y = out + r &* channels
            var sum: Float = 0
            for i in 0..<channels { sum += x[i] }
            let m = sum / count
            // Two passes (mean, then squared deviations) avoid the cancellation of E[x²] − E[x]².
            var squares: Float = 0
            for i in 0..<channels {
                let d = x[i] - m
                squares += d * d
            }
            let s = 1 / (squares / count + eps).squareRoot()
            for i in 0..<channels { y[i] = (x[i] - m) * s * weight[i] + bias[i] }
            mean[r] = m
            rstd[r] = s
        }
    }

    /// Accumulates into `dInput`, `dWeight`, `dBias`, using the `mean` and `rstd` saved by forward.
    ///
    /// With `n = (x − mean)·rstd` and `dn = weight·dOut`, per row:
    /// `dInput += rstd·(dn − mean(dn) − n·mean(dn·n))`, `dWeight += n·dOut`, `dBias += dOut`.
    public static func backward(
        dInput: UnsafeMutablePointer<Float>, dWeight: UnsafeMutablePointer<Float>, dBias: UnsafeMutablePointer<Float>,
        dOut: UnsafePointer<Float>, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>, rows: Int, channels: Int
    ) {
        let count = Float(channels)
        for r in 0..<rows {
            let x = input + r &* channels, dy = dOut + r &* channels, dx = dInput + r &* channels
            let m = mean[r], s = rstd[r]
            var dnMean: Float = 0, dnNormMean: Float = 0
            for i in 0..<channels {
                let dn = weight[i] * dy[i]
                dnMean += dn
                dnNormMean += dn * (x[i] - m) * s
            }
            dnMean /= count
            dnNormMean /= count
            for i in 0..<channels {
                let n = (x[i] - m) * s
                let dn = weight[i] * dy[i]
                dBias[i] += dy[i]
                dWeight[i] += n * dy[i]
                dx[i] += (dn - dnMean - n * dnNormMean) * s
            }
        }
    }

    /// The same two-pass formula in `T`, the oracle for tests. Returns `out (N, C)`.
    ///
    /// The default eps is written `1 / 100_000` because `Real` has integer literals only: a float literal
    /// (`1e-5`) as a generic default is a compiler warning today and an error in a later language mode.
    public static func forwardReference<T: Real>(
        input: [T], weight: [T], bias: [T], rows: Int, channels: Int, eps: T = 1 / 100_000
    ) -> [T] {
        var out = [T](repeating: 0, count: rows * channels)
        let count = T(channels)
        for r in 0..<rows {
            let x = input[(r * channels)..<((r + 1) * channels)]
            let m = x.reduce(0, +) / count
            let variance = x.reduce(0) { $0 + ($1 - m) * ($1 - m) } / count
            let s = 1 / T.sqrt(variance + eps)
            for i in 0..<channels {
                out[r * channels + i] = (input[r * channels + i] - m) * s * weight[i] + bias[i]
            }
        }
        return out
    }
}
