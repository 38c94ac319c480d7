import Foundation
import LockstepKernels
import LockstepTestSupport
import Testing

@testable import LockstepModel
import LockstepOptimizer

/// Options for fine-tuning a classifier: class weights in the loss, head-only backward, a fresh head, and
/// per-tensor learning-rate scales (freezing) in AdamW.
///
/// Tolerances: the weighted loss against a Double computation from the class logits, 1e-6 relative; the
/// weighted gradient against the weighted sum of single-row gradients 1e-4 (as the accumulation test), and against central finite
/// differences of the Float model (h = 2⁻⁷, loss summed in Double from the logits) 1e-2, both relative with a
/// floor of 1% of the largest gradient; uniform weights against none, 1e-6; optimizer scales bitwise.
@Suite struct ClassifierOptionsTests {
    static let config = GPTConfig(
        vocabularySize: 37, contextLength: 5, layerCount: 2, headCount: 2, channels: 8, labelCount: 3)
    static let batch = 4, time = 5
    /// Different lengths (one full, one of a single token) and one ignored row.
    static let lengths: [Int32] = [5, 3, 1, 4]
    static let labels: [Int32] = [2, 0, -100, 1]
    static let weights: [Float] = [0.5, 2, 1.25]

    /// A tiny classifier whose parameters are larger than the initialisation's (LayerNorm and biases included),
    /// so every parameter's gradient matters, and the `(batch, T)` tokens, right-padded with 0.
    static func makeModel() -> (GPT, [Int32]) {
        let model = GPT(config: config, batchSize: batch, sequenceLength: time)
        model.initializeRandomly(seed: 3)
        var random = TestRandom(seed: 17)
        for i in model.parameters.indices { model.parameters[i] += Float(random.uniform(-0.3, 0.3)) }
        var tokens = (0..<(batch * time)).map { _ in Int32(random.int(below: 37)) }
        for b in 0..<batch {
            for t in Int(lengths[b])..<time { tokens[b * time + t] = 0 }
        }
        return (model, tokens)
    }

    /// `Σ_b w[y_b]·loss_b / Σ_b w[y_b]` over counted rows, in Double from `logits (B, K)`; nil weights are all 1.
    static func weightedLoss(logits: [Float], labels: [Int32], weights: [Float]?) -> Double {
        let K = logits.count / labels.count
        var total = 0.0, weightSum = 0.0
        for (b, label) in labels.enumerated() where label != -100 {
            let row = logits[(b * K)..<((b + 1) * K)].map(Double.init)
            let maximum = row.max()!
            let logSumExp = maximum + Foundation.log(row.reduce(0) { $0 + Foundation.exp($1 - maximum) })
            let w = Double(weights?[Int(label)] ?? 1)
            total += w * (logSumExp - row[Int(label)])
            weightSum += w
        }
        return total / weightSum
    }

    /// Gradients after one `classify` and `backwardClassification(lossScale:)` from zero.
    static func gradients(_ model: GPT, _ tokens: [Int32], labels: [Int32] = labels, lossScale: Float = 1) -> (Float, [Float]) {
        model.zeroGradients()
        let loss = model.classify(tokens: tokens, lengths: lengths, labels: labels, batch: batch)
        model.backwardClassification(lossScale: lossScale)
        return (loss, Array(model.gradients))
    }

    static func scaledError(_ actual: [Float], _ expected: [Double]) -> Double {
        let largest = expected.reduce(0) { max($0, abs($1)) }
        return maxRelativeError(actual, expected, floor: 0.01 * largest)
    }

    // MARK: - Class weights

    @Test func weightedLossMatchesDoubleFormula() {
        let (model, tokens) = Self.makeModel()
        model.classWeights = Self.weights
        let loss = model.classify(tokens: tokens, lengths: Self.lengths, labels: Self.labels, batch: Self.batch)
        let expected = Self.weightedLoss(logits: Array(model.classLogits), labels: Self.labels, weights: Self.weights)
        #expect(abs(Double(loss) - expected) <= 1e-6 * expected, "\(loss) vs \(expected)")
        // It really is weighted: the plain mean differs.
        let plain = Self.weightedLoss(logits: Array(model.classLogits), labels: Self.labels, weights: nil)
        #expect(abs(plain - expected) > 1e-3)

        // Every row ignored: loss 0 and zero gradients, not NaN.
        let none: [Int32] = [-100, -100, -100, -100]
        model.zeroGradients()
        #expect(model.classify(tokens: tokens, lengths: Self.lengths, labels: none, batch: Self.batch) == 0)
        model.backwardClassification()
        #expect(model.gradients.allSatisfy { $0 == 0 })
    }

    /// The weighted gradient is `Σ_b (w[y_b] / Σw) · ∇loss_b`, each `∇loss_b` from the (reference-tested)
    /// unweighted backward with only row b counted; and it matches finite differences of the weighted loss.
    @Test func weightedGradientMatchesRowSumAndFiniteDifferences() {
        let (model, tokens) = Self.makeModel()
        let lossScale: Float = 0.7
        model.classWeights = Self.weights
        let (_, weighted) = Self.gradients(model, tokens, lossScale: lossScale)

        model.classWeights = nil
        let counted = Self.labels.enumerated().filter { $0.element != -100 }
        let weightSum = counted.reduce(0.0) { $0 + Double(Self.weights[Int($1.element)]) }
        var rowSum = [Double](repeating: 0, count: model.parameters.count)
        for (b, label) in counted {
            var single = [Int32](repeating: -100, count: Self.batch)
            single[b] = label
            let (_, rowGradient) = Self.gradients(model, tokens, labels: single)
            let share = Double(lossScale) * Double(Self.weights[Int(label)]) / weightSum
            for i in rowSum.indices { rowSum[i] += share * Double(rowGradient[i]) }
        }
        let rowSumError = Self.scaledError(weighted, rowSum)

        model.classWeights = Self.weights
        let h: Float = 1.0 / 128
        var numerical = [Double](repeating: 0, count: model.parameters.count)
        for i in model.parameters.indices {
            let saved = model.parameters[i]
            func loss(at value: Float) -> Double {
                model.parameters[i] = value
                model.classify(tokens: tokens, lengths: Self.lengths, labels: nil, batch: Self.batch)
                return Self.weightedLoss(logits: Array(model.classLogits), labels: Self.labels, weights: Self.weights)
            }
            let plus = saved + h, minus = saved - h
            numerical[i] = Double(lossScale) * (loss(at: plus) - loss(at: minus)) / Double(plus - minus)
            model.parameters[i] = saved
        }
        let finiteDifferenceError = Self.scaledError(weighted, numerical)
        print("Weighted classifier gradient: \(rowSumError) against the row sum, \(finiteDifferenceError) against finite differences")
        #expect(rowSumError < 1e-4)
        #expect(finiteDifferenceError < 1e-2)
        // Every tensor gets a gradient (the check covers them all).
        for tensor in model.layout.tensors {
            #expect(weighted[tensor.range].contains { $0 != 0 }, "\(tensor.name)")
        }
    }

    @Test func equalWeightsMatchUnweighted() {
        let (model, tokens) = Self.makeModel()
        let (plainLoss, plain) = Self.gradients(model, tokens, lossScale: 0.5)
        model.classWeights = [2.5, 2.5, 2.5]
        let (loss, equal) = Self.gradients(model, tokens, lossScale: 0.5)
        #expect(abs(loss - plainLoss) <= 1e-6 * plainLoss)
        let largest = plain.reduce(0) { max($0, abs(Double($1))) }
        #expect(maxRelativeError(equal, plain.doubles, floor: 1e-3 * largest) < 1e-6)
    }

    // MARK: - Head-only backward

    @Test func headOnlyBackwardTouchesOnlyTheScore() {
        let (model, tokens) = Self.makeModel()
        let score = model.layout.range(of: "score.weight")!
        for weights in [nil, Self.weights] {
            model.classWeights = weights
            let (_, full) = Self.gradients(model, tokens, lossScale: 0.5)

            model.zeroGradients()
            model.classify(tokens: tokens, lengths: Self.lengths, labels: Self.labels, batch: Self.batch)
            var called = false
            model.backwardClassification(
                lossScale: 0.5, headOnly: true,
                events: BackwardEvents(headReady: { called = true }, blockReady: { _ in called = true }, progress: { called = true }))
            #expect(!called)
            #expect(Array(model.gradients[score]) == Array(full[score]), "weights \(String(describing: weights))")
            #expect(model.gradients[..<score.lowerBound].allSatisfy { $0 == 0 })
            #expect(model.gradients[score.upperBound...].allSatisfy { $0 == 0 })
            #expect(model.gradients[score].contains { $0 != 0 })
        }

        // A full backward tells every block.
        model.classify(tokens: tokens, lengths: Self.lengths, labels: Self.labels, batch: Self.batch)
        var blocks: [Int] = []
        model.backwardClassification(lossScale: 1, events: BackwardEvents(blockReady: { blocks.append($0) }))
        #expect(blocks == [1, 0])
    }

    // MARK: - Head initialisation

    @Test func initializeHeadDrawsOnlyTheScore() {
        let (model, _) = Self.makeModel()
        let score = model.layout.range(of: "score.weight")!
        let before = Array(model.parameters)
        model.initializeHead(seed: 5)
        let first = Array(model.parameters)
        #expect(Array(first[..<score.lowerBound]) == Array(before[..<score.lowerBound]))
        #expect(Array(first[score.upperBound...]) == Array(before[score.upperBound...]))
        #expect(zip(first[score], before[score]).allSatisfy { $0 != $1 })
        model.initializeHead(seed: 5)
        #expect(Array(model.parameters) == first)
        model.initializeHead(seed: 6)
        #expect(Array(model.parameters[score]) != Array(first[score]))

        // 16 × 128 samples: the sample standard deviation is within 10% of 0.02 (about 4.5 of its own
        // standard deviations, 0.02 / √(2n)), the mean within 4 standard errors of 0.
        var large = GPTConfig(vocabularySize: 10, contextLength: 4, layerCount: 1, headCount: 2, channels: 128)
        large.labelCount = 16
        let wide = GPT(config: large, batchSize: 1, sequenceLength: 4)
        wide.initializeHead(seed: 9)
        let values = wide.parameters[wide.layout.range(of: "score.weight")!].map(Double.init)
        let mean = values.reduce(0, +) / Double(values.count)
        let std = (values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(values.count)).squareRoot()
        #expect(abs(std - 0.02) < 0.002, "std \(std)")
        #expect(abs(mean) < 4 * 0.02 / Double(values.count).squareRoot(), "mean \(mean)")
        #expect(wide.parameters[..<wide.layout.score!].allSatisfy { $0 == 0 })
    }

    // MARK: - Learning-rate scales

    /// Random parameters and three steps of random gradients through `optimizer`.
    static func run(_ optimizer: AdamWOptimizer, learningRate: Float = 1e-2) -> [Float] {
        let count = optimizer.layout.count
        var random = TestRandom(seed: 23)
        var parameters = (0..<count).map { _ in Float(random.uniform()) }
        let settings = AdamWSettings(weightDecay: 0.1)
        for _ in 0..<3 {
            var gradients = (0..<count).map { _ in Float(random.uniform(-0.1, 0.1)) }
            parameters.withUnsafeMutableBufferPointer { p in
                gradients.withUnsafeMutableBufferPointer { g in
                    optimizer.step(parameters: p, gradients: g, learningRate: learningRate, settings: settings)
                }
            }
        }
        return parameters
    }

    static let layout = ParameterLayout(config: config)
    static let initial: [Float] = {
        var random = TestRandom(seed: 23)
        return (0..<layout.count).map { _ in Float(random.uniform()) }
    }()

    @Test func zeroScaleFreezesParametersAndMoments() {
        let frozen: Set<String> = ["transformer.h.0.attn.c_attn.weight", "transformer.ln_f.bias", "transformer.wte.weight"]
        let optimizer = AdamWOptimizer(layout: Self.layout) { frozen.contains($0.name) ? 0 : 1 }
        let after = Self.run(optimizer)
        for tensor in Self.layout.tensors {
            #expect(optimizer.learningRateScale(of: tensor) == (frozen.contains(tensor.name) ? 0 : 1))
            let moved = zip(after[tensor.range], Self.initial[tensor.range]).contains { $0 != $1 }
            let hasMoments = optimizer.m[tensor.range].contains { $0 != 0 } && optimizer.v[tensor.range].contains { $0 != 0 }
            if frozen.contains(tensor.name) {
                #expect(!moved && optimizer.m[tensor.range].allSatisfy { $0 == 0 } && optimizer.v[tensor.range].allSatisfy { $0 == 0 }, "\(tensor.name)")
            } else {
                #expect(moved && hasMoments, "\(tensor.name)")
            }
        }
    }

    @Test func halfScaleEqualsHalfLearningRate() {
        let halved = "transformer.h.1.mlp.c_fc.weight", halvedBias = "transformer.h.0.ln_1.bias"
        let scaled = AdamWOptimizer(layout: Self.layout) { [halved, halvedBias].contains($0.name) ? 0.5 : 1 }
        let plain = AdamWOptimizer(layout: Self.layout), half = AdamWOptimizer(layout: Self.layout)
        let scaledParameters = Self.run(scaled), plainParameters = Self.run(plain)
        let halfParameters = Self.run(half, learningRate: 0.5e-2)
        for tensor in Self.layout.tensors {
            let reference = [halved, halvedBias].contains(tensor.name) ? (half, halfParameters) : (plain, plainParameters)
            #expect(scaled.learningRateScale(of: tensor) == ([halved, halvedBias].contains(tensor.name) ? 0.5 : 1))
            #expect(Array(scaledParameters[tensor.range]) == Array(reference.1[tensor.range]), "\(tensor.name)")
            #expect(Array(scaled.m[tensor.range]) == Array(reference.0.m[tensor.range]), "\(tensor.name)")
            #expect(Array(scaled.v[tensor.range]) == Array(reference.0.v[tensor.range]), "\(tensor.name)")
        }
        #expect(Array(halfParameters[Self.layout.range(of: halved)!]) != Array(plainParameters[Self.layout.range(of: halved)!]))
    }

    /// The default is the optimizer as it was before scales: every tensor updated at the given learning rate,
    /// with decay on matrices only (AdamW is element-wise, so per-tensor calls equal the grouped ones bitwise).
    @Test func defaultScalesMatchPlainAdamW() {
        let optimizer = AdamWOptimizer(layout: Self.layout)
        let after = Self.run(optimizer)
        #expect(Self.layout.tensors.allSatisfy { optimizer.learningRateScale(of: $0) == 1 })

        var random = TestRandom(seed: 23)
        var parameters = (0..<Self.layout.count).map { _ in Float(random.uniform()) }
        var m = [Float](repeating: 0, count: Self.layout.count), v = m
        for step in 1...3 {
            let gradients = (0..<Self.layout.count).map { _ in Float(random.uniform(-0.1, 0.1)) }
            for tensor in Self.layout.tensors {
                let o = tensor.offset
                parameters.withUnsafeMutableBufferPointer { p in
                    m.withUnsafeMutableBufferPointer { m in
                        v.withUnsafeMutableBufferPointer { v in
                            gradients.withUnsafeBufferPointer { g in
                                AdamW.update(
                                    parameters: p.baseAddress! + o, gradients: g.baseAddress! + o, m: m.baseAddress! + o,
                                    v: v.baseAddress! + o, count: tensor.count, step: step, learningRate: 1e-2,
                                    settings: AdamWSettings(weightDecay: 0.1), applyWeightDecay: Self.layout.decays(tensor))
                            }
                        }
                    }
                }
            }
        }
        #expect(after == parameters)
        #expect(Array(optimizer.m) == m)
        #expect(Array(optimizer.v) == v)
    }

    /// Rows cut to the longest length (here 4 of 5) give the same loss and gradients as full rows: causal
    /// attention never lets a row's last real token see the padding after it.
    @Test func shorterRowsGiveTheSameLossAndGradients() throws {
        let (model, tokens) = Self.makeModel()
        let labels: [Int32] = [2, 0, 1, 1]
        let lengths: [Int32] = [4, 3, 1, 4]
        model.zeroGradients()
        let full = model.classify(tokens: tokens, lengths: lengths, labels: labels, batch: Self.batch)
        model.backwardClassification()
        let fullGradients = Array(model.gradients)
        let short = (0..<Self.batch).flatMap { b in tokens[(b * Self.time)..<(b * Self.time + 4)] }
        model.zeroGradients()
        let cut = model.classify(tokens: short, lengths: lengths, labels: labels, batch: Self.batch, time: 4)
        model.backwardClassification()
        #expect(abs(cut - full) <= 1e-6 * abs(full))
        #expect(maxRelativeError(Array(model.gradients), fullGradients.map(Double.init), floor: 1e-3) <= 1e-4)
    }
}
