import RealModule

/// Token + position embedding.
///
/// Shapes: `tokens (B, T)` as Int32, `wte (V, C)`, `wpe (maxT, C)` with T ≤ maxT, `out (B, T, C)`.
public enum Embedding {
    public static func forward(
        out: UnsafeMutablePointer<Float>, tokens: UnsafePointer<Int32>, wte: UnsafePointer<Float>,
        wpe: UnsafePointer<Float>, batch: Int, time: Int, channels: Int
    ) {
        fatalError("Embedding.forward: not implemented yet")
    }

    /// Scatter-adds `dOut` rows into `dWte` (by token) and `dWpe` (by position).
    public static func backward(
        dWte: UnsafeMutablePointer<Float>, dWpe: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>,
        tokens: UnsafePointer<Int32>, batch: Int, time: Int, channels: Int
    ) {
        fatalError("Embedding.backward: not implemented yet")
    }

    public static func forwardReference<T: Real>(
        tokens: [Int32], wte: [T], wpe: [T], batch: Int, time: Int, channels: Int
    ) -> [T] {
        fatalError("Embedding.forwardReference: not implemented yet")
    }
}
