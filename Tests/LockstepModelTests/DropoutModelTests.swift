import Foundation
import LockstepKernels
import LockstepTestSupport
import Testing

@testable import LockstepModel

/// `training.dropout` inside the model: with a fixed draw the masked model is a fixed function of its
/// parameters, so its backward must match finite differences of its loss; without a draw nothing changes.
///
/// Tolerances: central finite differences of the Float model, the loss summed in Double from the logits,
/// 1e-2 relative with a floor of 1% of the largest gradient (as `ClassifierOptionsTests`). The step is h = 2⁻⁹:
/// at `ClassifierOptionsTests`' 2⁻⁷ the Llama family's truncation error alone is 2e-2, with or without dropout.
@Suite struct DropoutModelTests {
    static let batch = 3, time = 5
    static let draw = Dropout.Draw(rate: 0.3, seed: 77)

    static func model(_ family: ModelFamily, labels: Int?) -> (GPT, [Int32]) {
        let config = GPTConfig(
            family: family, vocabularySize: 29, contextLength: time, layerCount: 2, headCount: 2, channels: 8,
            labelCount: labels)
        let model = GPT(config: config, batchSize: batch, sequenceLength: time)
        model.initializeRandomly(seed: 4)
        var random = TestRandom(seed: 19)
        for i in model.parameters.indices { model.parameters[i] += Float(random.uniform(-0.3, 0.3)) }
        return (model, (0..<(batch * time)).map { _ in Int32(random.int(below: 29)) })
    }

    /// Mean cross-entropy in Double of `logits (rows, K)` against `targets (rows)`.
    static func meanLoss(_ logits: UnsafeBufferPointer<Float>, targets: [Int32]) -> Double {
        let K = logits.count / targets.count
        var total = 0.0
        for (row, target) in targets.enumerated() {
            let values = (0..<K).map { Double(logits[row * K + $0]) }
            let maximum = values.max()!
            total += maximum + log(values.reduce(0) { $0 + exp($1 - maximum) }) - values[Int(target)]
        }
        return total / Double(targets.count)
    }

    /// The analytic gradient of `loss` (which runs the model with the draw and returns its Double loss) against
    /// central finite differences over every parameter; the worst scaled error.
    static func gradientError(_ model: GPT, backward: () -> Void, loss: () -> Double) -> Double {
        model.zeroGradients()
        _ = loss()
        backward()
        let analytic = Array(model.gradients)
        let h: Float = 1.0 / 512
        var numerical = [Double](repeating: 0, count: analytic.count)
        for i in model.parameters.indices {
            let saved = model.parameters[i]
            model.parameters[i] = saved + h
            let plus = loss()
            model.parameters[i] = saved - h
            let minus = loss()
            model.parameters[i] = saved
            numerical[i] = (plus - minus) / Double(2 * h)
        }
        let largest = numerical.reduce(0) { max($0, abs($1)) }
        return maxRelativeError(analytic, numerical, floor: 0.01 * largest)
    }

    @Test(arguments: ModelFamily.allCases) func languageModelBackwardMatchesFiniteDifferences(family: ModelFamily) {
        let (model, tokens) = Self.model(family, labels: nil)
        let targets = tokens.map { ($0 &* 7 &+ 3) % 29 }
        let error = Self.gradientError(model, backward: { model.backward() }) {
            model.forward(tokens: tokens, targets: targets, batch: Self.batch, dropout: Self.draw)
            return Self.meanLoss(model.logits, targets: targets)
        }
        print("Dropout language-model gradient (\(family)): \(error) against finite differences")
        #expect(error < 1e-2)
    }

    @Test(arguments: ModelFamily.allCases) func classifierBackwardMatchesFiniteDifferences(family: ModelFamily) {
        let (model, tokens) = Self.model(family, labels: 3)
        let lengths: [Int32] = [5, 2, 4], labels: [Int32] = [2, 0, 1]
        let error = Self.gradientError(model, backward: { model.backwardClassification() }) {
            model.classify(tokens: tokens, lengths: lengths, labels: labels, batch: Self.batch, dropout: Self.draw)
            return Self.meanLoss(model.classLogits, targets: labels)
        }
        print("Dropout classifier gradient (\(family)): \(error) against finite differences")
        #expect(error < 1e-2)
    }

    /// A draw changes the loss, the same draw gives the same loss again, and no draw gives the plain model.
    @Test func aDrawMasksAndNoDrawDoesNot() {
        let (model, tokens) = Self.model(.llama, labels: nil)
        let targets = tokens.map { ($0 &* 5 &+ 1) % 29 }
        let plain = model.forward(tokens: tokens, targets: targets, batch: Self.batch)
        let masked = model.forward(tokens: tokens, targets: targets, batch: Self.batch, dropout: Self.draw)
        let again = model.forward(tokens: tokens, targets: targets, batch: Self.batch, dropout: Self.draw)
        let other = model.forward(tokens: tokens, targets: targets, batch: Self.batch, dropout: Self.draw.part(1))
        #expect(masked != plain && masked == again && other != masked)
        #expect(model.forward(tokens: tokens, targets: targets, batch: Self.batch) == plain)
    }
}
