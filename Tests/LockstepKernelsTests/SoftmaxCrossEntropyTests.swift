import LockstepTestSupport
import Testing

@testable import LockstepKernels

/// Fused softmax + cross-entropy against its Double reference and finite differences: odd vocabularies,
/// one row, ignored rows, every row ignored, huge logits, in-place use, and the multi-threaded path.
/// Tolerances: losses and probabilities 1e-5 relative (Float exp and sums over V ≤ 2000 terms); gradients
/// 1e-3 relative with a 1e-4 floor against Double central differences (h = 1e-5) of the mean loss.
@Suite struct SoftmaxCrossEntropyTests {
    static let ignore: Int32 = -100
    /// (rows, vocab): vocabularies deliberately not multiples of 8, and a single row.
    static let shapes: [(rows: Int, vocab: Int)] = [(1, 1), (1, 5), (4, 13), (7, 50), (3, 8), (6, 37)]

    /// Targets in `0 ..< vocab`, with every third row ignored when `withIgnored` (never all rows).
    static func targets(_ random: inout TestRandom, rows: Int, vocab: Int, withIgnored: Bool) -> [Int32] {
        (0..<rows).map { r in withIgnored && r % 3 == 1 ? ignore : Int32(random.int(below: vocab)) }
    }

    /// Softmax of each row and per-row loss (0 for ignored rows), in Double from the definition.
    static func expectedRows(_ logits: [Double], _ targets: [Int32], rows: Int, vocab: Int)
        -> (probabilities: [Double], losses: [Double])
    {
        var probabilities = [Double](), losses = [Double]()
        for r in 0..<rows {
            let row = Array(logits[(r * vocab)..<((r + 1) * vocab)])
            let maximum = row.max()!
            let sum = row.reduce(0) { $0 + Double.exp($1 - maximum) }
            probabilities += row.map { Double.exp($0 - maximum) / sum }
            losses.append(
                SoftmaxCrossEntropy.forwardReference(
                    logits: row, targets: [targets[r]], rows: 1, vocab: vocab, ignoreIndex: ignore))
        }
        return (probabilities, losses)
    }

    /// Runs `forward` out of place; returns probabilities, losses, mean and count.
    static func runForward(_ logits: [Float], _ targets: [Int32], rows: Int, vocab: Int)
        -> (probabilities: [Float], losses: [Float], mean: Float, counted: Int)
    {
        var probabilities = [Float](repeating: .nan, count: rows * vocab)
        var losses = [Float](repeating: .nan, count: rows)
        let (mean, counted) = SoftmaxCrossEntropy.forward(
            losses: &losses, probabilities: &probabilities, logits: logits, targets: targets, rows: rows,
            vocab: vocab, ignoreIndex: ignore)
        return (probabilities, losses, mean, counted)
    }

    @Test(arguments: [true, false])
    func forwardMatchesReference(withIgnored: Bool) {
        var random = TestRandom(seed: 11)
        for (rows, vocab) in Self.shapes {
            let logits = random.doubles(rows * vocab, -4, 4)
            let targets = Self.targets(&random, rows: rows, vocab: vocab, withIgnored: withIgnored)
            let expected = Self.expectedRows(logits, targets, rows: rows, vocab: vocab)
            let expectedMean = SoftmaxCrossEntropy.forwardReference(
                logits: logits, targets: targets, rows: rows, vocab: vocab, ignoreIndex: Self.ignore)

            let result = Self.runForward(logits.floats, targets, rows: rows, vocab: vocab)
            #expect(result.counted == targets.filter { $0 != Self.ignore }.count, "rows \(rows) vocab \(vocab)")
            #expect(maxRelativeError([result.mean], [expectedMean]) < 1e-5, "mean, rows \(rows) vocab \(vocab)")
            #expect(maxRelativeError(result.losses, expected.losses) < 1e-5, "losses, rows \(rows) vocab \(vocab)")
            #expect(
                maxRelativeError(result.probabilities, expected.probabilities, floor: 1e-6) < 1e-5,
                "probabilities, rows \(rows) vocab \(vocab)")
            for r in 0..<rows where targets[r] == Self.ignore { #expect(result.losses[r] == 0) }
        }
    }

    /// Logits near 1000 overflow a naive `exp`; the max-subtracted form gives the same finite answer.
    @Test func forwardIsStableForLargeLogits() {
        var random = TestRandom(seed: 12)
        let rows = 3, vocab = 29
        let logits = random.doubles(rows * vocab, 990, 1010)
        let targets = Self.targets(&random, rows: rows, vocab: vocab, withIgnored: false)
        let expectedMean = SoftmaxCrossEntropy.forwardReference(
            logits: logits, targets: targets, rows: rows, vocab: vocab, ignoreIndex: Self.ignore)
        let result = Self.runForward(logits.floats, targets, rows: rows, vocab: vocab)
        #expect(result.mean.isFinite && result.probabilities.allSatisfy { $0.isFinite })
        #expect(maxRelativeError([result.mean], [expectedMean]) < 1e-5)
    }

    /// `probabilities` on top of `logits`, then `dLogits` on top of `probabilities`: same numbers as out of place.
    @Test func inPlaceMatchesOutOfPlace() {
        var random = TestRandom(seed: 13)
        let rows = 5, vocab = 23
        let logits = random.doubles(rows * vocab, -3, 3).floats
        let targets = Self.targets(&random, rows: rows, vocab: vocab, withIgnored: true)
        let separate = Self.runForward(logits, targets, rows: rows, vocab: vocab)
        var separateGradient = [Float](repeating: .nan, count: rows * vocab)
        SoftmaxCrossEntropy.backward(
            dLogits: &separateGradient, probabilities: separate.probabilities, targets: targets, rows: rows,
            vocab: vocab, scale: 1 / Float(separate.counted), ignoreIndex: Self.ignore)

        var buffer = logits
        var losses = [Float](repeating: .nan, count: rows)
        let (mean, counted) = buffer.withUnsafeMutableBufferPointer { buffer in
            let base = buffer.baseAddress!
            let result = SoftmaxCrossEntropy.forward(
                losses: &losses, probabilities: base, logits: base, targets: targets, rows: rows, vocab: vocab,
                ignoreIndex: Self.ignore)
            #expect(Array(buffer) == separate.probabilities, "in-place softmax")
            SoftmaxCrossEntropy.backward(
                dLogits: base, probabilities: base, targets: targets, rows: rows, vocab: vocab,
                scale: 1 / Float(result.counted), ignoreIndex: Self.ignore)
            return result
        }
        #expect(mean == separate.mean && counted == separate.counted && losses == separate.losses)
        #expect(buffer == separateGradient, "in-place gradient")
    }

    @Test(arguments: [true, false])
    func backwardMatchesFiniteDifferences(withIgnored: Bool) {
        var random = TestRandom(seed: 14)
        for (rows, vocab) in Self.shapes {
            let logits = random.doubles(rows * vocab, -3, 3)
            let targets = Self.targets(&random, rows: rows, vocab: vocab, withIgnored: withIgnored)
            let expected = numericalGradient(at: logits) {
                SoftmaxCrossEntropy.forwardReference(
                    logits: $0, targets: targets, rows: rows, vocab: vocab, ignoreIndex: Self.ignore)
            }
            let forward = Self.runForward(logits.floats, targets, rows: rows, vocab: vocab)
            // Starts non-zero to check that backward overwrites, ignored rows included.
            var dLogits = [Float](repeating: 7, count: rows * vocab)
            SoftmaxCrossEntropy.backward(
                dLogits: &dLogits, probabilities: forward.probabilities, targets: targets, rows: rows, vocab: vocab,
                scale: 1 / Float(forward.counted), ignoreIndex: Self.ignore)
            #expect(maxRelativeError(dLogits, expected, floor: 1e-4) < 1e-3, "rows \(rows) vocab \(vocab)")
            for r in 0..<rows where targets[r] == Self.ignore {
                #expect(dLogits[(r * vocab)..<((r + 1) * vocab)].allSatisfy { $0 == 0 }, "ignored row \(r)")
            }
        }
    }

    /// Every target padded: mean 0 over 0 rows, not NaN; gradients exactly 0 even with `scale = 1 / 0`.
    @Test func allRowsIgnored() {
        var random = TestRandom(seed: 15)
        let rows = 4, vocab = 11
        let logits = random.doubles(rows * vocab, -3, 3)
        let targets = [Int32](repeating: Self.ignore, count: rows)
        let result = Self.runForward(logits.floats, targets, rows: rows, vocab: vocab)
        #expect(result.mean == 0 && result.counted == 0)
        #expect(result.losses.allSatisfy { $0 == 0 })
        #expect(result.probabilities.allSatisfy { $0.isFinite })
        #expect(
            SoftmaxCrossEntropy.forwardReference(
                logits: logits, targets: targets, rows: rows, vocab: vocab, ignoreIndex: Self.ignore) == 0)
        var dLogits = [Float](repeating: .nan, count: rows * vocab)
        SoftmaxCrossEntropy.backward(
            dLogits: &dLogits, probabilities: result.probabilities, targets: targets, rows: rows, vocab: vocab,
            scale: 1 / Float(result.counted), ignoreIndex: Self.ignore)
        #expect(dLogits.allSatisfy { $0 == 0 })
    }

    /// `rows · vocab` above 65,536 takes the multi-threaded path; checked against the closed-form gradient
    /// `(p − onehot) / counted` in Double, since finite differences at this size would be slow.
    @Test func largeInputsUseManyThreadsAndStillMatch() {
        var random = TestRandom(seed: 16)
        let rows = 70, vocab = 1999
        let logits = random.doubles(rows * vocab, -4, 4)
        let targets = Self.targets(&random, rows: rows, vocab: vocab, withIgnored: true)
        let expected = Self.expectedRows(logits, targets, rows: rows, vocab: vocab)
        let expectedMean = SoftmaxCrossEntropy.forwardReference(
            logits: logits, targets: targets, rows: rows, vocab: vocab, ignoreIndex: Self.ignore)
        let result = Self.runForward(logits.floats, targets, rows: rows, vocab: vocab)
        #expect(maxRelativeError([result.mean], [expectedMean]) < 1e-5)
        #expect(maxRelativeError(result.losses, expected.losses) < 1e-5)
        #expect(maxRelativeError(result.probabilities, expected.probabilities, floor: 1e-6) < 1e-5)

        let counted = targets.filter { $0 != Self.ignore }.count
        var expectedGradient = [Double](repeating: 0, count: rows * vocab)
        for r in 0..<rows where targets[r] != Self.ignore {
            for i in 0..<vocab {
                let onehot: Double = i == Int(targets[r]) ? 1 : 0
                expectedGradient[r * vocab + i] = (expected.probabilities[r * vocab + i] - onehot) / Double(counted)
            }
        }
        var dLogits = [Float](repeating: .nan, count: rows * vocab)
        SoftmaxCrossEntropy.backward(
            dLogits: &dLogits, probabilities: result.probabilities, targets: targets, rows: rows, vocab: vocab,
            scale: 1 / Float(result.counted), ignoreIndex: Self.ignore)
        #expect(maxRelativeError(dLogits, expectedGradient, floor: 1e-6) < 1e-4)
    }
}
