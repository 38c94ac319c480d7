import RealModule

/// Llama's gated MLP activation (SwiGLU): `out = silu(gate)·up`, with `silu(x) = x·sigmoid(x)`.
///
/// Shapes: `gateUp (N, 2I)` holds `[gate (I) | up (I)]` per row, the output of one fused matmul of
/// `gate_proj` and `up_proj` (one sgemm instead of two); `out (N, I)` is the input of `down_proj`.
/// N is rows (B·T), I the MLP's hidden size.
///
/// The sigmoid is `1 / (1 + e^−x)` with `VectorMath.exp`, which saturates instead of overflowing: for
/// x = −100 it gives about 4e-39 instead of 4e-44 (silu −4e-37 instead of −4e-42, both negligible), for
/// x = 100 exactly 1, so no inf or NaN for any finite input.
public enum SiLUGating {
    public static func forward(
        out: UnsafeMutablePointer<Float>, gateUp: UnsafePointer<Float>, rows: Int, hidden: Int
    ) {
        Parallel.forEachRange(rows, minimumChunk: rowsPerChunk(hidden)) { range in
            for r in range {
                let gate = gateUp + r &* 2 &* hidden, up = gate + hidden, y = out + r &* hidden
                var i = 0
                while i < hidden {
                    let lanes = min(8, hidden &- i)
                    let g = VectorMath.load(gate + i, count: lanes)
                    let u = VectorMath.load(up + i, count: lanes)
                    VectorMath.store(g * sigmoid(g) * u, to: y + i, count: lanes)
                    i &+= 8
                }
            }
        }
    }

    /// Accumulates into dGateUp (rows, 2I).
    ///
    /// With `σ = sigmoid(gate)`: `dGate += dOut·up·σ·(1 + gate·(1 − σ))` (the derivative of x·σ(x)) and
    /// `dUp += dOut·gate·σ`, recomputing σ from `gateUp` rather than keeping it from forward.
    public static func backward(
        dGateUp: UnsafeMutablePointer<Float>, gateUp: UnsafePointer<Float>, dOut: UnsafePointer<Float>, rows: Int,
        hidden: Int
    ) {
        Parallel.forEachRange(rows, minimumChunk: rowsPerChunk(hidden)) { range in
            for r in range {
                let gate = gateUp + r &* 2 &* hidden, up = gate + hidden
                let dGate = dGateUp + r &* 2 &* hidden, dUp = dGate + hidden, dy = dOut + r &* hidden
                var i = 0
                while i < hidden {
                    let lanes = min(8, hidden &- i)
                    let g = VectorMath.load(gate + i, count: lanes)
                    let u = VectorMath.load(up + i, count: lanes)
                    let d = VectorMath.load(dy + i, count: lanes)
                    let s = sigmoid(g)
                    let dg = VectorMath.load(dGate + i, count: lanes) + d * u * s * (1 + g * (1 - s))
                    let du = VectorMath.load(dUp + i, count: lanes) + d * g * s
                    VectorMath.store(dg, to: dGate + i, count: lanes)
                    VectorMath.store(du, to: dUp + i, count: lanes)
                    i &+= 8
                }
            }
        }
    }

    /// The same formula in `T`, the oracle for tests. Returns `out (N, I)`.
    public static func forwardReference<T: Real>(gateUp: [T], rows: Int, hidden: Int) -> [T] {
        var out = [T](repeating: 0, count: rows * hidden)
        for r in 0..<rows {
            for i in 0..<hidden {
                let g = gateUp[r * 2 * hidden + i], u = gateUp[r * 2 * hidden + hidden + i]
                // Both branches are e^(−|g|) based, so neither overflows.
                let sigma = g >= 0 ? 1 / (1 + T.exp(-g)) : T.exp(g) / (1 + T.exp(g))
                out[r * hidden + i] = g * sigma * u
            }
        }
        return out
    }

    /// 1 / (1 + e^−x): e^−x saturates at about 2.5e38 for x < −88.37 (1 + it stays finite), and is 0 for
    /// x > 87.33, so the result is in [0, 1] for every finite x.
    @inline(__always)
    private static func sigmoid(_ x: VectorMath.Vector) -> VectorMath.Vector {
        1 / (1 + VectorMath.exp(-x))
    }

    /// Rows per chunk when spread over threads: about 16,384 values of `out`.
    private static func rowsPerChunk(_ hidden: Int) -> Int { max(1, (1 << 14) / max(1, hidden)) }
}
