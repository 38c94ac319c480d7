import RealModule

/// Fused softmax + cross-entropy over the vocabulary, with an ignore index for padded targets.
///
/// Shapes: `logits, probabilities (N, V)`, `targets (N)` as Int32, `losses (N)`. Rows whose target equals
/// `ignoreIndex` get loss 0 and zero gradient and are not counted in the mean. `probabilities` may be the
/// same memory as `logits` (softmax in place), and in backward `dLogits` may be the same memory as
/// `probabilities`, so the (N, V) tensor need not exist twice.
///
/// Every target must be `ignoreIndex` or lie in `0 ..< V`; anything else is a caller bug (the data loader
/// validates token ids), so it stops with a precondition rather than reading outside the row.
/// Rows are independent, so large calls (`N·V ≥ 65,536`, a few rows of a real vocabulary) are split into
/// contiguous row ranges across `ComputeThreads`; small ones stay on the calling thread.
public enum SoftmaxCrossEntropy {
    /// Writes `probabilities` and per-row `losses`; returns the mean loss over counted rows and their count.
    /// Ignored rows still get their probabilities (softmax does not depend on the target). With no counted
    /// rows the mean is 0, not NaN.
    @discardableResult
    public static func forward(
        losses: UnsafeMutablePointer<Float>, probabilities: UnsafeMutablePointer<Float>, logits: UnsafePointer<Float>,
        targets: UnsafePointer<Int32>, rows: Int, vocab: Int, ignoreIndex: Int32 = -100
    ) -> (meanLoss: Float, counted: Int) {
        precondition(vocab > 0, "SoftmaxCrossEntropy.forward: vocab must be positive, got \(vocab)")
        checkTargets(targets, rows: rows, vocab: vocab, ignoreIndex: ignoreIndex, caller: "forward")
        forEachRowRange(rows: rows, vocab: vocab) { range in
            forwardRows(
                range, losses: losses, probabilities: probabilities, logits: logits, targets: targets, vocab: vocab,
                ignoreIndex: ignoreIndex)
        }
        // Serial and in Double, so the mean does not depend on how rows were split across threads.
        var sum = 0.0
        var counted = 0
        for r in 0..<rows where targets[r] != ignoreIndex {
            sum += Double(losses[r])
            counted &+= 1
        }
        return (counted == 0 ? 0 : Float(sum / Double(counted)), counted)
    }

    /// Writes (not accumulates) `dLogits = scale · (probabilities − onehot(target))` for counted rows and 0 for
    /// ignored rows. For the gradient of the mean loss, `scale = 1 / counted`. Ignored rows get an exact 0
    /// without touching `scale`, so with every row ignored `scale = 1 / 0` still gives zeros, not NaN.
    public static func backward(
        dLogits: UnsafeMutablePointer<Float>, probabilities: UnsafePointer<Float>, targets: UnsafePointer<Int32>,
        rows: Int, vocab: Int, scale: Float, ignoreIndex: Int32 = -100
    ) {
        precondition(vocab > 0, "SoftmaxCrossEntropy.backward: vocab must be positive, got \(vocab)")
        checkTargets(targets, rows: rows, vocab: vocab, ignoreIndex: ignoreIndex, caller: "backward")
        forEachRowRange(rows: rows, vocab: vocab) { range in
            for r in range {
                let p = probabilities + r &* vocab
                let d = dLogits + r &* vocab
                let target = targets[r]
                if target == ignoreIndex {
                    d.update(repeating: 0, count: vocab)
                    continue
                }
                // Element by element, so `d` and `p` may be the same memory; hence `p[t]` is read first.
                let t = Int(target)
                let targetProbability = p[t]
                for i in 0..<vocab { d[i] = scale * p[i] }
                d[t] = scale * (targetProbability - 1)
            }
        }
    }

    /// Mean loss over counted rows, computed from the definition: `−log softmax(logits[r])[target[r]]`,
    /// max-subtracted. Returns 0 when every row is ignored.
    public static func forwardReference<T: Real>(
        logits: [T], targets: [Int32], rows: Int, vocab: Int, ignoreIndex: Int32 = -100
    ) -> T {
        var total: T = 0
        var counted = 0
        for r in 0..<rows where targets[r] != ignoreIndex {
            let row = logits[(r * vocab)..<((r + 1) * vocab)]
            let maximum = row.max()!
            let sumExp = row.reduce(T(0)) { $0 + T.exp($1 - maximum) }
            total += T.log(sumExp) - (row[row.startIndex + Int(targets[r])] - maximum)
            counted += 1
        }
        return counted == 0 ? 0 : total / T(counted)
    }

    // MARK: - Private

    /// Softmax and loss for `range` of rows. Reads a row's target logit before the row is overwritten,
    /// because `probabilities` may alias `logits`.
    private static func forwardRows(
        _ range: Range<Int>, losses: UnsafeMutablePointer<Float>, probabilities: UnsafeMutablePointer<Float>,
        logits: UnsafePointer<Float>, targets: UnsafePointer<Int32>, vocab: Int, ignoreIndex: Int32
    ) {
        for r in range {
            let x = logits + r &* vocab
            let target = targets[r]
            let targetLogit = target == ignoreIndex ? 0 : x[Int(target)]
            let (maximum, sum) = VectorMath.softmax(x, into: probabilities + r &* vocab, count: vocab)
            // log(Σ exp(x − max)) − (x_t − max) rather than −log p_t: exact even when p_t underflows to 0.
            losses[r] = target == ignoreIndex ? 0 : Float.log(sum) - (targetLogit - maximum)
        }
    }

    private static func checkTargets(
        _ targets: UnsafePointer<Int32>, rows: Int, vocab: Int, ignoreIndex: Int32, caller: String
    ) {
        for r in 0..<rows {
            let t = targets[r]
            precondition(
                t == ignoreIndex || (t >= 0 && Int(t) < vocab),
                "SoftmaxCrossEntropy.\(caller): target \(t) in row \(r) is neither \(ignoreIndex) (ignored) "
                    + "nor in 0..<\(vocab)")
        }
    }

    /// Calls `body` on contiguous row ranges covering `0 ..< rows`, spread over the cores when there are at
    /// least 2¹⁶ values (a few rows of a real vocabulary).
    private static func forEachRowRange(rows: Int, vocab: Int, _ body: (Range<Int>) -> Void) {
        Parallel.forEachRange(rows, minimumChunk: max(1, (1 << 15) / vocab), body)
    }
}
