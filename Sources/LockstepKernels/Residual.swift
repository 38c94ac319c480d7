import RealModule

/// Residual connection: `out = a + b`, elementwise over `count` values.
public enum Residual {
    public static func forward(
        out: UnsafeMutablePointer<Float>, a: UnsafePointer<Float>, b: UnsafePointer<Float>, count: Int
    ) {
        fatalError("Residual.forward: not implemented yet")
    }

    /// Accumulates `dA += dOut`, `dB += dOut`.
    public static func backward(
        dA: UnsafeMutablePointer<Float>, dB: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>, count: Int
    ) {
        fatalError("Residual.backward: not implemented yet")
    }

    public static func forwardReference<T: Real>(a: [T], b: [T]) -> [T] {
        fatalError("Residual.forwardReference: not implemented yet")
    }
}
