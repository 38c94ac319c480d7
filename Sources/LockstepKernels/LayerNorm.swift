import RealModule

/// Layer normalisation over the channel axis.
///
/// Shapes: `input, out (N, C)`, `weight, bias (C)`, saved statistics `mean, rstd (N)` (kept for backward).
public enum LayerNorm {
    public static func forward(
        out: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>,
        input: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>,
        rows: Int, channels: Int, eps: Float = 1e-5
    ) {
        fatalError("LayerNorm.forward: not implemented yet")
    }

    /// Accumulates into `dInput`, `dWeight`, `dBias`.
    public static func backward(
        dInput: UnsafeMutablePointer<Float>, dWeight: UnsafeMutablePointer<Float>, dBias: UnsafeMutablePointer<Float>,
        dOut: UnsafePointer<Float>, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>, rows: Int, channels: Int
    ) {
        fatalError("LayerNorm.backward: not implemented yet")
    }

    public static func forwardReference<T: Real>(
        input: [T], weight: [T], bias: [T], rows: Int, channels: Int, eps: T = 1e-5
    ) -> [T] {
        fatalError("LayerNorm.forwardReference: not implemented yet")
    }
}
