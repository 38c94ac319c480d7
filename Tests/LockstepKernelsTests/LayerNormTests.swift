import LockstepTestSupport
import RealModule
import Testing

@testable import LockstepKernels

/// LayerNorm against its reference and finite differences, with the default eps and a large one (so a
/// kernel ignoring `eps` fails), C = 1 (zero variance) and C not a multiple of 8.
/// Tolerances: forward output and saved mean/rstd 1e-5 relative, absolute below 1 (Float sums of ≤ 37 terms);
/// backward 1e-3 relative against Double finite differences, as for Matmul.
@Suite struct LayerNormTests {
    static let shapes: [(rows: Int, channels: Int)] = [(1, 1), (1, 12), (5, 13), (6, 37), (2, 64)]

    @Test(arguments: [1e-5, 0.5])
    func forwardMatchesReference(eps: Double) {
        var random = TestRandom(seed: 11)
        for (n, c) in Self.shapes {
            let input = random.doubles(n * c), weight = random.doubles(c), bias = random.doubles(c)
            let expected = LayerNorm.forwardReference(
                input: input, weight: weight, bias: bias, rows: n, channels: c, eps: eps)
            var expectedMean = [Double](), expectedRstd = [Double]()
            for r in 0..<n {
                let row = input[(r * c)..<((r + 1) * c)]
                let m = row.reduce(0, +) / Double(c)
                expectedMean.append(m)
                expectedRstd.append(1 / (row.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(c) + eps).squareRoot())
            }
            var out = [Float](repeating: .nan, count: n * c)
            var mean = [Float](repeating: .nan, count: n), rstd = [Float](repeating: .nan, count: n)
            LayerNorm.forward(
                out: &out, mean: &mean, rstd: &rstd, input: input.floats, weight: weight.floats, bias: bias.floats,
                rows: n, channels: c, eps: Float(eps))
            #expect(maxRelativeError(out, expected, floor: 1) < 1e-5, "out \(n)x\(c)")
            #expect(maxRelativeError(mean, expectedMean, floor: 1) < 1e-5, "mean \(n)x\(c)")
            #expect(maxRelativeError(rstd, expectedRstd, floor: 1) < 1e-5, "rstd \(n)x\(c)")
        }
    }

    @Test func defaultEpsIsGPT2s() {
        let input: [Float] = [1, 1, 1, 2], weight: [Float] = [1, 1, 1, 1], bias: [Float] = [0, 0, 0, 0]
        var out = [Float](repeating: 0, count: 4), mean: [Float] = [0], rstd: [Float] = [0]
        LayerNorm.forward(
            out: &out, mean: &mean, rstd: &rstd, input: input, weight: weight, bias: bias, rows: 1, channels: 4)
        #expect(abs(Double(rstd[0]) - 1 / (0.1875 + 1e-5).squareRoot()) < 1e-5)
        let reference = LayerNorm.forwardReference(
            input: input.doubles, weight: weight.doubles, bias: bias.doubles, rows: 1, channels: 4)
        #expect(maxRelativeError(out, reference, floor: 1) < 1e-5)
    }

    @Test func backwardMatchesFiniteDifferences() {
        var random = TestRandom(seed: 12)
        for (n, c) in Self.shapes {
            let input = random.doubles(n * c), weight = random.doubles(c), bias = random.doubles(c)
            let dOut = random.doubles(n * c)
            func loss(_ input: [Double], _ weight: [Double], _ bias: [Double]) -> Double {
                dot(LayerNorm.forwardReference(input: input, weight: weight, bias: bias, rows: n, channels: c), dOut)
            }
            let expectedInput = numericalGradient(at: input) { loss($0, weight, bias) }
            let expectedWeight = numericalGradient(at: weight) { loss(input, $0, bias) }
            let expectedBias = numericalGradient(at: bias) { loss(input, weight, $0) }

            // Backward reads the statistics that forward saved.
            let inputF = input.floats, weightF = weight.floats
            var out = [Float](repeating: 0, count: n * c)
            var mean = [Float](repeating: 0, count: n), rstd = [Float](repeating: 0, count: n)
            LayerNorm.forward(
                out: &out, mean: &mean, rstd: &rstd, input: inputF, weight: weightF, bias: bias.floats,
                rows: n, channels: c)

            // Gradients start non-zero to check that backward accumulates rather than overwrites.
            var dInput = [Float](repeating: 0.5, count: n * c)
            var dWeight = [Float](repeating: 0.5, count: c), dBias = [Float](repeating: 0.5, count: c)
            LayerNorm.backward(
                dInput: &dInput, dWeight: &dWeight, dBias: &dBias, dOut: dOut.floats, input: inputF, weight: weightF,
                mean: mean, rstd: rstd, rows: n, channels: c)
            #expect(maxRelativeError(dInput, expectedInput.map { $0 + 0.5 }) < 1e-3, "dInput \(n)x\(c)")
            #expect(maxRelativeError(dWeight, expectedWeight.map { $0 + 0.5 }) < 1e-3, "dWeight \(n)x\(c)")
            #expect(maxRelativeError(dBias, expectedBias.map { $0 + 0.5 }) < 1e-3, "dBias \(n)x\(c)")
        }
    }
}
