import LockstepTestSupport
import Testing

@testable import LockstepKernels

/// Residual add against its reference and finite differences.
/// Tolerances: forward 1e-5 relative, absolute below 1 (one Float rounding per element);
/// backward 1e-3 relative against Double finite differences, as for Matmul.
@Suite struct ResidualTests {
    static let counts = [1, 7, 60, 12 * 5]

    @Test func forwardMatchesReference() {
        var random = TestRandom(seed: 31)
        for count in Self.counts {
            let a = random.doubles(count), b = random.doubles(count)
            let expected = Residual.forwardReference(a: a, b: b)
            var out = [Float](repeating: .nan, count: count)
            Residual.forward(out: &out, a: a.floats, b: b.floats, count: count)
            #expect(maxRelativeError(out, expected, floor: 1) < 1e-5, "count \(count)")
        }
    }

    @Test func backwardMatchesFiniteDifferences() {
        var random = TestRandom(seed: 32)
        for count in Self.counts {
            let a = random.doubles(count), b = random.doubles(count), dOut = random.doubles(count)
            let expectedA = numericalGradient(at: a) { dot(Residual.forwardReference(a: $0, b: b), dOut) }
            let expectedB = numericalGradient(at: b) { dot(Residual.forwardReference(a: a, b: $0), dOut) }

            // Gradients start non-zero to check that backward accumulates rather than overwrites.
            var dA = [Float](repeating: 0.5, count: count), dB = [Float](repeating: -0.25, count: count)
            Residual.backward(dA: &dA, dB: &dB, dOut: dOut.floats, count: count)
            #expect(maxRelativeError(dA, expectedA.map { $0 + 0.5 }) < 1e-3, "dA count \(count)")
            #expect(maxRelativeError(dB, expectedB.map { $0 - 0.25 }) < 1e-3, "dB count \(count)")
        }
    }
}
