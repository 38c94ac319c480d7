import RealModule

/// GELU with the tanh approximation (GPT-2's `gelu_new`), elementwise over `count` values:
/// `gelu(x) = 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`.
///
/// Shapes: `input, out (count)`, in the model the MLP's hidden activations `(B, T, 4C)` flattened.
public enum GELU {
    /// √(2/π), the tanh approximation's inner scale.
    static let scale: Float = 0.797_884_560_802_865_4
    /// The cubic term's coefficient.
    static let cubic: Float = 0.044715

    /// Values per chunk when spread over `ComputeThreads` (a chunk takes a few microseconds).
    static let minimumChunk = 1 << 14

    /// Overwrites `out`; `out` may alias `input`.
    public static func forward(out: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, count: Int) {
        Parallel.forEachRange(count, minimumChunk: minimumChunk) { range in
            var i = range.lowerBound
            while i < range.upperBound {
                let lanes = min(8, range.upperBound &- i)
                let x = VectorMath.load(input + i, count: lanes)
                let u = scale * (x + cubic * x * x * x)
                VectorMath.store(0.5 * x * (1 + VectorMath.tanh(u)), to: out + i, count: lanes)
                i &+= 8
            }
        }
    }

    /// Accumulates `dInput += gelu'(input) * dOut`, recomputing the tanh from `input` rather than keeping it
    /// from forward (one tanh per value is cheaper than another `(B, T, 4C)` buffer).
    ///
    /// With `u = s·(x + c·x³)` and `t = tanh(u)`: `gelu'(x) = 0.5·(1 + t) + 0.5·x·(1 − t²)·s·(1 + 3c·x²)`.
    public static func backward(
        dInput: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, dOut: UnsafePointer<Float>, count: Int
    ) {
        Parallel.forEachRange(count, minimumChunk: minimumChunk) { range in
            var i = range.lowerBound
            while i < range.upperBound {
                let lanes = min(8, range.upperBound &- i)
                let x = VectorMath.load(input + i, count: lanes)
                let x2 = x * x
                let t = VectorMath.tanh(scale * (x + cubic * x2 * x))
                let du = scale * (1 + 3 * cubic * x2)
                let derivative = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du
                let sum = VectorMath.load(dInput + i, count: lanes)
                    + derivative * VectorMath.load(dOut + i, count: lanes)
                VectorMath.store(sum, to: dInput + i, count: lanes)
                i &+= 8
            }
        }
    }

    /// The same formula in `T`, the oracle for tests.
    public static func forwardReference<T: Real>(input: [T]) -> [T] {
        let s = T.sqrt(2 / T.pi), c = T(44715) / 1_000_000
        return input.map { x in x * (1 + T.tanh(s * (x + c * x * x * x))) / 2 }
    }
}
