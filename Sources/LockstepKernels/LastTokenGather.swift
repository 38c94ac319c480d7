import RealModule

/// Gathers each sequence's last real (non-padding) position, as `GPT2ForSequenceClassification` does.
///
/// Shapes: `hidden (B, T, C)`, `lengths (B)` as Int32 with `1 ≤ length ≤ T` (right padding), `out (B, C)`:
/// `out[b] = hidden[b, lengths[b] - 1]`.
public enum LastTokenGather {
    public static func forward(
        out: UnsafeMutablePointer<Float>, hidden: UnsafePointer<Float>, lengths: UnsafePointer<Int32>,
        batch: Int, time: Int, channels: Int
    ) {
        fatalError("LastTokenGather.forward: not implemented yet")
    }

    /// Accumulates `dOut[b]` into `dHidden[b, lengths[b] - 1]`.
    public static func backward(
        dHidden: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>, lengths: UnsafePointer<Int32>,
        batch: Int, time: Int, channels: Int
    ) {
        fatalError("LastTokenGather.backward: not implemented yet")
    }

    public static func forwardReference<T: Real>(
        hidden: [T], lengths: [Int32], batch: Int, time: Int, channels: Int
    ) -> [T] {
        fatalError("LastTokenGather.forwardReference: not implemented yet")
    }
}
