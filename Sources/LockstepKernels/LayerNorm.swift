import RealModule

/// Layer normalisation over the channel axis: `out = (x − mean)·rstd·weight + bias` per row, with
/// `rstd = 1/√(var + eps)` and the biased variance (divided by C), as PyTorch's `nn.LayerNorm`.
///
/// Shapes: `input, out (N, C)`, `weight, bias (C)`, saved statistics `mean, rstd (N)` (kept for backward).
/// N is rows (B·T), C channels.
public enum LayerNorm {
    /// Overwrites `out`, `mean` and `rstd`. Rows are spread over `ComputeThreads`.
    public static func forward(
        out: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>,
        input: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>,
        rows: Int, channels: Int, eps: Float = 1e-5
    ) {
        let count = Float(channels)
        Parallel.forEachRange(rows, minimumChunk: rowsPerChunk(channels)) { range in
            for r in range {
                let x = input + r &* channels, y = out + r &* channels
                let m = VectorMath.sum(channels) { VectorMath.load(x + $0, count: $1) } / count
                // Two passes (mean, then squared deviations) avoid the cancellation of E[x²] − E[x]².
                let squares = VectorMath.sum(channels) { i, lanes in
                    let d = VectorMath.load(x + i, count: lanes) - m
                    return d * d
                }
                let s = 1 / (squares / count + eps).squareRoot()
                for i in 0..<channels { y[i] = (x[i] - m) * s * weight[i] + bias[i] }
                mean[r] = m
                rstd[r] = s
            }
        }
    }

    /// Accumulates into `dInput`, `dWeight`, `dBias`, using the `mean` and `rstd` saved by forward.
    ///
    /// With `n = (x − mean)·rstd` and `dn = weight·dOut`, per row:
    /// `dInput += rstd·(dn − mean(dn) − n·mean(dn·n))`, `dWeight += n·dOut`, `dBias += dOut`.
    /// `dInput` is spread over the cores by rows; `dWeight` and `dBias`, sums over rows, by channels, each
    /// channel adding its rows in order (so the sums do not depend on the thread count).
    public static func backward(
        dInput: UnsafeMutablePointer<Float>, dWeight: UnsafeMutablePointer<Float>, dBias: UnsafeMutablePointer<Float>,
        dOut: UnsafePointer<Float>, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>, rows: Int, channels: Int
    ) {
        let count = Float(channels)
        Parallel.forEachRange(rows, minimumChunk: rowsPerChunk(channels)) { range in
            for r in range {
                let x = input + r &* channels, dy = dOut + r &* channels, dx = dInput + r &* channels
                let m = mean[r], s = rstd[r]
                var dnSums = VectorMath.Vector(), dnNormSums = VectorMath.Vector()
                var i = 0
                while i < channels {
                    let lanes = min(8, channels &- i)
                    let dn = VectorMath.load(weight + i, count: lanes) * VectorMath.load(dy + i, count: lanes)
                    dnSums += dn
                    dnNormSums += dn * (VectorMath.load(x + i, count: lanes) - m) * s
                    i &+= 8
                }
                let dnMean = dnSums.sum() / count, dnNormMean = dnNormSums.sum() / count
                for i in 0..<channels {
                    let n = (x[i] - m) * s
                    dx[i] += (weight[i] * dy[i] - dnMean - n * dnNormMean) * s
                }
            }
        }
        Parallel.forEachRange(channels, minimumChunk: max(8, (1 << 13) / max(1, rows))) { columns in
            for r in 0..<rows {
                let x = input + r &* channels, dy = dOut + r &* channels
                let m = mean[r], s = rstd[r]
                for i in columns {
                    dBias[i] += dy[i]
                    dWeight[i] += (x[i] - m) * s * dy[i]
                }
            }
        }
    }

    /// Rows per chunk when spread over threads: about 8,192 values.
    private static func rowsPerChunk(_ channels: Int) -> Int { max(1, (1 << 13) / max(1, channels)) }


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
