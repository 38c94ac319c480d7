import LockstepTestSupport
import Testing

@testable import LockstepKernels

/// Dropout against its definition and finite differences, and its coins' statistics.
/// Tolerances: forward 1e-6 relative (one Float product per value); backward 1e-3 relative against Double
/// finite differences, as for the other kernels.
@Suite struct DropoutTests {
    static let counts = [1, 7, 60, 12 * 5, 70_000]

    @Test func forwardMatchesReference() {
        var random = TestRandom(seed: 41)
        for count in Self.counts {
            let draw = Dropout.Draw(rate: 0.25, seed: UInt64(count))
            let values = random.doubles(count)
            let expected = Dropout.forwardReference(values, draw: draw)
            var out = values.floats
            Dropout.forward(&out, count: count, draw: draw)
            #expect(maxRelativeError(out, expected, floor: 1) < 1e-6, "count \(count)")
        }
    }

    @Test func backwardMatchesFiniteDifferences() {
        var random = TestRandom(seed: 42)
        for count in [1, 7, 60] {
            let draw = Dropout.Draw(rate: 0.4, seed: 9 &+ UInt64(count))
            let values = random.doubles(count), dOut = random.doubles(count)
            let expected = numericalGradient(at: values) { dot(Dropout.forwardReference($0, draw: draw), dOut) }
            var dValues = dOut.floats
            Dropout.backward(&dValues, count: count, draw: draw)
            #expect(maxRelativeError(dValues, expected) < 1e-3, "count \(count)")
        }
    }

    /// About `rate` of the values are zeroed (within 5 standard deviations of a binomial count), the others
    /// scaled; rate 0 changes nothing; two parts of one draw zero different values.
    @Test func zeroesTheRateAndScalesTheRest() {
        let count = 100_000
        for rate: Float in [0, 0.1, 0.5] {
            let draw = Dropout.Draw(rate: rate, seed: 5)
            var values = [Float](repeating: 2, count: count)
            Dropout.forward(&values, count: count, draw: draw)
            let zeroed = values.filter { $0 == 0 }.count
            let expected = Double(rate) * Double(count)
            let spread = 5 * (Double(count) * Double(rate) * (1 - Double(rate))).squareRoot()
            #expect(abs(Double(zeroed) - expected) <= spread, "rate \(rate): \(zeroed) zeroed")
            #expect(values.allSatisfy { $0 == 0 || $0 == 2 / (1 - rate) }, "rate \(rate)")
        }
        let draw = Dropout.Draw(rate: 0.5, seed: 5)
        var first = [Float](repeating: 1, count: 1000), second = first
        Dropout.forward(&first, count: 1000, draw: draw.part(0))
        Dropout.forward(&second, count: 1000, draw: draw.part(1))
        #expect(first != second)
    }
}
