import LockstepKernels
import LockstepModel
import LockstepTestSupport
import Testing

@testable import LockstepOptimizer

/// Muon against the algorithm written out in Double on the `(out, in)` matrices, with GPT-2's Conv1D storage
/// `(in, out)`: `c_attn` (3C, C) and `c_fc` (4C, C) have more rows than columns, `mlp.c_proj` (C, 4C) fewer,
/// `attn.c_proj` is square. The other tensors must get exactly the AdamW a plain `AdamWOptimizer` gives them.
@Suite("Muon optimizer")
struct MuonOptimizerTests {
    static let layout = ParameterLayout(
        config: GPTConfig(vocabularySize: 11, contextLength: 4, layerCount: 2, headCount: 2, channels: 8))
    static let adamSettings = AdamWSettings(beta1: 0.9, beta2: 0.95, epsilon: 1e-8, weightDecay: 0.1)

    /// Muon's step in Double, straight from the definition, on one matrix in `(out, in)` orientation.
    struct Reference {
        var parameters: [Double], momentum: [Double]
        let outputs: Int, inputs: Int

        mutating func step(gradient g: [Double], learningRate lr: Double, momentum mu: Double, weightDecay wd: Double) {
            for i in g.indices { momentum[i] += (1 - mu) * (g[i] - momentum[i]) }
            let u = g.indices.map { g[$0] + mu * (momentum[$0] - g[$0]) }
            let x = NewtonSchulz.reference(u, rows: outputs, columns: inputs)
            let scale = max(1, Double(outputs) / Double(inputs)).squareRoot()
            for i in parameters.indices { parameters[i] = parameters[i] * (1 - lr * wd) - lr * scale * x[i] }
        }
    }

    /// The stored `(in, out)` Conv1D values of `tensor` as the `(out, in)` matrix, and back.
    static func linear(_ stored: [Double], _ tensor: ParameterTensor) -> [Double] {
        let rows = tensor.shape[0], columns = tensor.shape[1]
        var out = [Double](repeating: 0, count: stored.count)
        for i in 0..<rows { for j in 0..<columns { out[j * rows + i] = stored[i * columns + j] } }
        return out
    }

    /// Three steps at changing learning rates (the second clipped, with a mean over two replicas folded in):
    /// every Muon matrix within 1e-5 of the Double reference (parameters O(1), the update O(lr) = O(0.02);
    /// Newton–Schulz in Float rounds a few ulps of its O(1) result), every other tensor bit for bit AdamW's.
    @Test func matchesDoubleReferenceAndAdamWElsewhere() throws {
        let layout = Self.layout
        var random = TestRandom(seed: 2024)
        let start = random.doubles(layout.count)
        let settings = MuonSettings(learningRate: 0.02, scheduleLearningRate: 1e-3, momentum: 0.95, weightDecay: 0.1)
        let muon = MuonOptimizer(layout: layout, settings: settings)
        let adamW = AdamWOptimizer(layout: layout)
        var muonParameters = start.floats, adamParameters = start.floats
        let matrices = layout.tensors.filter(\.role.isBlockMatrix)
        #expect(muon.muonTensorNames == matrices.map(\.name))
        var references = matrices.map { tensor in
            let shape = layout.linearShape(tensor)!
            return Reference(
                parameters: Self.linear(Array(start[tensor.range]), tensor),
                momentum: [Double](repeating: 0, count: tensor.count), outputs: shape.outputs, inputs: shape.inputs)
        }
        // (scheduled rate, replicas' mean factor, max norm)
        let steps: [(Double, Float, Float)] = [(1e-3, 1, 0), (5e-4, 0.5, 1.0), (2e-4, 1, 0)]
        for (scheduled, meanFactor, maxNorm) in steps {
            let gradients = random.doubles(layout.count, -2, 2)
            var sum = gradients.floats
            let norm = sum.withUnsafeMutableBufferPointer {
                AdamWOptimizer.meanGradientNorm(gradientSum: $0, meanFactor: meanFactor)
            }
            try muonParameters.withUnsafeMutableBufferPointer { p in
                try sum.withUnsafeMutableBufferPointer { g in
                    try muon.step(
                        parameters: p, gradientSum: g, norm: norm, meanFactor: meanFactor, maxNorm: maxNorm,
                        scheduledLearningRate: scheduled, settings: Self.adamSettings)
                }
            }
            adamParameters.withUnsafeMutableBufferPointer { p in
                sum.withUnsafeMutableBufferPointer { g in
                    adamW.step(
                        parameters: p, gradientSum: g, norm: norm, meanFactor: meanFactor, maxNorm: maxNorm,
                        learningRate: Float(scheduled), settings: Self.adamSettings)
                }
            }
            let clip = Double(maxNorm > 0 ? GradientClipping.factor(norm: norm, maxNorm: maxNorm) : 1) * Double(meanFactor)
            for (k, tensor) in matrices.enumerated() {
                let g = Self.linear(Array(gradients[tensor.range]), tensor).map { $0 * clip }
                references[k].step(gradient: g, learningRate: 0.02 * scheduled / 1e-3, momentum: 0.95, weightDecay: 0.1)
            }
        }
        for (k, tensor) in matrices.enumerated() {
            let actual = Self.linear(Array(muonParameters[tensor.range]).doubles, tensor)
            let error = zip(actual, references[k].parameters).map { abs($0 - $1) }.max() ?? 0
            #expect(error < 1e-5, "\(tensor.name): max error \(error)")
            #expect(muon.v[tensor.range].allSatisfy { $0 == 0 }, "\(tensor.name): second moments stay 0")
            let momentum = Self.linear(Array(muon.m[tensor.range]).doubles, tensor)
            let momentumError = zip(momentum, references[k].momentum).map { abs($0 - $1) }.max() ?? 0
            #expect(momentumError < 1e-6, "\(tensor.name): momentum error \(momentumError)")
        }
        for tensor in layout.tensors where !tensor.role.isBlockMatrix {
            #expect(muonParameters[tensor.range] == adamParameters[tensor.range], "\(tensor.name)")
            #expect(Array(muon.m[tensor.range]) == Array(adamW.m[tensor.range]) && Array(muon.v[tensor.range]) == Array(adamW.v[tensor.range]))
        }
        #expect(muon.stepCount == 3)
        muon.reset()
        #expect(muon.stepCount == 0 && muon.m.allSatisfy { $0 == 0 })
    }

    /// A frozen matrix (learning-rate scale 0) gets neither momentum nor updates; a scaled one moves at the
    /// scaled rate (its decay too), as a PyTorch group with its own `lr`.
    @Test func frozenAndScaledMatrices() throws {
        let layout = Self.layout
        let frozen = layout.tensor(named: "transformer.h.0.attn.c_attn.weight")!
        let halved = layout.tensor(named: "transformer.h.1.mlp.c_fc.weight")!
        let settings = MuonSettings(learningRate: 0.02, scheduleLearningRate: 1e-3, momentum: 0.9, weightDecay: 0.1)
        let scaled = MuonOptimizer(layout: layout, settings: settings) { $0 == frozen ? 0 : $0 == halved ? 0.5 : 1 }
        var halfSettings = settings
        halfSettings.learningRate = 0.01
        let half = MuonOptimizer(layout: layout, settings: halfSettings)
        #expect(!scaled.muonTensorNames.contains(frozen.name))
        var random = TestRandom(seed: 5)
        let start = random.doubles(layout.count).floats
        var gradients = random.doubles(layout.count).floats
        var p = start, q = start
        try p.withUnsafeMutableBufferPointer { p in
            try gradients.withUnsafeMutableBufferPointer { g in
                try scaled.step(
                    parameters: p, gradientSum: g, norm: 1, meanFactor: 1, maxNorm: 0, scheduledLearningRate: 1e-3,
                    settings: Self.adamSettings)
            }
        }
        try q.withUnsafeMutableBufferPointer { q in
            try gradients.withUnsafeMutableBufferPointer { g in
                try half.step(
                    parameters: q, gradientSum: g, norm: 1, meanFactor: 1, maxNorm: 0, scheduledLearningRate: 1e-3,
                    settings: Self.adamSettings)
            }
        }
        #expect(p[frozen.range] == start[frozen.range])
        #expect(scaled.m[frozen.range].allSatisfy { $0 == 0 })
        #expect(p[halved.range] == q[halved.range])
        #expect(p[halved.range] != start[halved.range])
    }

    /// The schedule scales Muon's rate: at a scheduled rate of 0 (or a schedule peak of 0) the matrices only
    /// gather momentum.
    @Test func zeroScheduledRateLeavesMatrices() throws {
        let layout = Self.layout
        for (scheduled, peak) in [(0.0, 1e-3), (1e-3, 0.0)] {
            let muon = MuonOptimizer(
                layout: layout, settings: MuonSettings(learningRate: 0.02, scheduleLearningRate: peak))
            var random = TestRandom(seed: 3)
            let start = random.doubles(layout.count).floats
            var p = start, g = random.doubles(layout.count).floats
            try p.withUnsafeMutableBufferPointer { p in
                try g.withUnsafeMutableBufferPointer { g in
                    try muon.step(
                        parameters: p, gradientSum: g, norm: 1, meanFactor: 1, maxNorm: 0,
                        scheduledLearningRate: scheduled, settings: Self.adamSettings)
                }
            }
            for tensor in layout.tensors where tensor.role.isBlockMatrix {
                #expect(p[tensor.range] == start[tensor.range])
                #expect(muon.m[tensor.range].contains { $0 != 0 })
            }
        }
    }

    /// The assignment balances cost, puts the largest first, and depends on the costs and the count only.
    @Test func ownersBalanceCost() {
        #expect(MuonOptimizer.owners(costs: [4, 1, 1, 1, 1], workers: 2) == [0, 1, 1, 1, 1])
        #expect(MuonOptimizer.owners(costs: [3, 3, 2, 2], workers: 2) == [0, 1, 0, 1])
        #expect(MuonOptimizer.owners(costs: [5, 5], workers: 1) == [0, 0])
        #expect(MuonOptimizer.owners(costs: [1], workers: 3) == [0])
        #expect(MuonOptimizer.owners(costs: [], workers: 2) == [])
    }
}
