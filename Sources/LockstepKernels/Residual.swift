import RealModule

/// Residual connection: `out = a + b`, elementwise over `count` values.
///
/// Shapes: `a, b, out (count)`, in the model `(B, T, C)` flattened.
public enum Residual {
    /// `out = a + b`. Overwrites `out`; `out` may alias `a` or `b`.
    public static func forward(
        out: UnsafeMutablePointer<Float>, a: UnsafePointer<Float>, b: UnsafePointer<Float>, count: Int
    ) {
        Parallel.forEachRange(count, minimumChunk: 1 << 15) { range in
            for i in range { out[i] = a[i] + b[i] }
        }
    }

    /// Accumulates `dA += dOut`, `dB += dOut`: the sum passes its gradient unchanged to both branches.
    public static func backward(
        dA: UnsafeMutablePointer<Float>, dB: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>, count: Int
    ) {
        for i in 0..<count {
            let g = dOut[i]
            dA[i] += g
            dB[i] += g
        }
    }

    /// Elementwise sum, the oracle for tests. `a` and `b` have the same count.
    public static func forwardReference<T: Real>(a: [T], b: [T]) -> [T] {
        precondition(a.count == b.count, "Residual: a has \(a.count) values, b has \(b.count)")
        return zip(a, b).map { $0 + $1 }
    }
}
