import LockstepTestSupport
import Testing

@testable import LockstepKernels

/// GELU against its reference and finite differences, over [-6, 6] (both tails and the bend) plus 0.
/// Tolerances: forward 1e-5 relative, absolute below 1 (Float tanh vs Double tanh);
/// backward 1e-3 relative against Double finite differences, as for Matmul.
@Suite struct GELUTests {
    static let counts = [1, 13, 100]

    static func inputs(_ random: inout TestRandom, _ count: Int) -> [Double] {
        var values = random.doubles(count, -6, 6)
        values[0] = 0
        return values
    }

    @Test func forwardMatchesReference() {
        var random = TestRandom(seed: 21)
        for count in Self.counts {
            let input = Self.inputs(&random, count)
            let expected = GELU.forwardReference(input: input)
            var out = [Float](repeating: .nan, count: count)
            GELU.forward(out: &out, input: input.floats, count: count)
            #expect(maxRelativeError(out, expected, floor: 1) < 1e-5, "count \(count)")
        }
    }

    @Test func backwardMatchesFiniteDifferences() {
        var random = TestRandom(seed: 22)
        for count in Self.counts {
            let input = Self.inputs(&random, count), dOut = random.doubles(count)
            let expected = numericalGradient(at: input) { dot(GELU.forwardReference(input: $0), dOut) }

            // Gradients start non-zero to check that backward accumulates rather than overwrites.
            var dInput = [Float](repeating: 0.5, count: count)
            GELU.backward(dInput: &dInput, input: input.floats, dOut: dOut.floats, count: count)
            #expect(maxRelativeError(dInput, expected.map { $0 + 0.5 }) < 1e-3, "count \(count)")
        }
    }
}
