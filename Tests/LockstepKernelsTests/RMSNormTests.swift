import LockstepTestSupport
import RealModule
import Testing

@testable import LockstepKernels

/// RMSNorm against its reference and finite differences, with Llama's eps (1e-5, and 1e-6 of later Llamas)
/// and a large one (so a kernel ignoring `eps` fails), C = 1 and C not a multiple of 8.
/// Tolerances: forward output and saved rstd 1e-5 relative, absolute below 1 (Float sums of ≤ 37 terms);
/// backward 1e-3 relative against Double finite differences, as for LayerNorm.
@Suite struct RMSNormTests {
    static let shapes: [(rows: Int, channels: Int)] = [(1, 1), (1, 12), (5, 13), (6, 37), (2, 64)]

    @Test(arguments: [1e-5, 1e-6, 0.5])
    func forwardMatchesReference(eps: Double) {
        var random = TestRandom(seed: 111)
        for (n, c) in Self.shapes {
            let input = random.doubles(n * c), weight = random.doubles(c)
            let expected = RMSNorm.forwardReference(input: input, weight: weight, rows: n, channels: c, eps: eps)
            var expectedRstd = [Double]()
            for r in 0..<n {
                let row = input[(r * c)..<((r + 1) * c)]
                expectedRstd.append(1 / (row.reduce(0) { $0 + $1 * $1 } / Double(c) + eps).squareRoot())
            }
            var out = [Float](repeating: .nan, count: n * c), rstd = [Float](repeating: .nan, count: n)
            RMSNorm.forward(
                out: &out, rstd: &rstd, input: input.floats, weight: weight.floats, rows: n, channels: c,
                eps: Float(eps))
            #expect(maxRelativeError(out, expected, floor: 1) < 1e-5, "out \(n)x\(c)")
            #expect(maxRelativeError(rstd, expectedRstd, floor: 1) < 1e-5, "rstd \(n)x\(c)")
        }
    }

    /// A hand-computed row: x = (1, 1, 1, 2), mean(x²) = 7/4, weight 2.
    @Test func knownRow() {
        let input: [Float] = [1, 1, 1, 2], weight: [Float] = [2, 2, 2, 2]
        var out = [Float](repeating: 0, count: 4), rstd: [Float] = [0]
        RMSNorm.forward(out: &out, rstd: &rstd, input: input, weight: weight, rows: 1, channels: 4, eps: 1e-5)
        let s = 1 / (1.75 + 1e-5).squareRoot()
        #expect(maxRelativeError(rstd, [s]) < 1e-6)
        #expect(maxRelativeError(out, [2 * s, 2 * s, 2 * s, 4 * s]) < 1e-6)
    }

    @Test func backwardMatchesFiniteDifferences() {
        var random = TestRandom(seed: 112)
        for (n, c) in Self.shapes {
            let input = random.doubles(n * c), weight = random.doubles(c), dOut = random.doubles(n * c)
            func loss(_ input: [Double], _ weight: [Double]) -> Double {
                dot(RMSNorm.forwardReference(input: input, weight: weight, rows: n, channels: c, eps: 1e-5), dOut)
            }
            let expectedInput = numericalGradient(at: input) { loss($0, weight) }
            let expectedWeight = numericalGradient(at: weight) { loss(input, $0) }

            // Backward reads the rstd that forward saved.
            let inputF = input.floats, weightF = weight.floats
            var out = [Float](repeating: 0, count: n * c), rstd = [Float](repeating: 0, count: n)
            RMSNorm.forward(out: &out, rstd: &rstd, input: inputF, weight: weightF, rows: n, channels: c, eps: 1e-5)

            // Gradients start non-zero to check that backward accumulates rather than overwrites.
            var dInput = [Float](repeating: 0.5, count: n * c), dWeight = [Float](repeating: 0.5, count: c)
            RMSNorm.backward(
                dInput: &dInput, dWeight: &dWeight, dOut: dOut.floats, input: inputF, weight: weightF, rstd: rstd,
                rows: n, channels: c)
            #expect(maxRelativeError(dInput, expectedInput.map { $0 + 0.5 }) < 1e-3, "dInput \(n)x\(c)")
            #expect(maxRelativeError(dWeight, expectedWeight.map { $0 + 0.5 }) < 1e-3, "dWeight \(n)x\(c)")
        }
    }
}
