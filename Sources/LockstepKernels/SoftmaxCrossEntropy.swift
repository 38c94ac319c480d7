import RealModule

/// Fused softmax + cross-entropy over the vocabulary, with an ignore index for padded targets.
///
/// Shapes: `logits, probabilities (N, V)`, `targets (N)` as Int32, `losses (N)`. Rows whose target equals
/// `ignoreIndex` get loss 0 and zero gradient and are not counted in the mean. `probabilities` may be the
/// same memory as `logits` (softmax in place), and in backward `dLogits` may be the same memory as
/// `probabilities`, so the (N, V) tensor need not exist twice.
public enum SoftmaxCrossEntropy {
    /// Writes `probabilities` and per-row `losses`; returns the mean loss over counted rows and their count.
    @discardableResult
    public static func forward(
        losses: UnsafeMutablePointer<Float>, probabilities: UnsafeMutablePointer<Float>, logits: UnsafePointer<Float>,
        targets: UnsafePointer<Int32>, rows: Int, vocab: Int, ignoreIndex: Int32 = -100
    ) -> (meanLoss: Float, counted: Int) {
        fatalError("SoftmaxCrossEntropy.forward: not implemented yet")
    }

    /// Writes (not accumulates) `dLogits = scale · (probabilities − onehot(target))` for counted rows and 0 for
    /// ignored rows. For the gradient of the mean loss, `scale = 1 / counted`.
    public static func backward(
        dLogits: UnsafeMutablePointer<Float>, probabilities: UnsafePointer<Float>, targets: UnsafePointer<Int32>,
        rows: Int, vocab: Int, scale: Float, ignoreIndex: Int32 = -100
    ) {
        fatalError("SoftmaxCrossEntropy.backward: not implemented yet")
    }

    /// Mean loss over counted rows, computed from the definition.
    public static func forwardReference<T: Real>(
        logits: [T], targets: [Int32], rows: Int, vocab: Int, ignoreIndex: Int32 = -100
    ) -> T {
        fatalError("SoftmaxCrossEntropy.forwardReference: not implemented yet")
    }
}
