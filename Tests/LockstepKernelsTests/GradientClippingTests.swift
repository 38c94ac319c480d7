import LockstepTestSupport
import Testing

@testable import LockstepKernels

/// Global norm against a Double sum (1e-6 relative: the kernel accumulates in Double, only the final
/// rounding to Float remains) and clipping with PyTorch's `maxNorm / (norm + 1e-6)` rule, with and without
/// clipping.
@Suite struct GradientClippingTests {
    static func norm(_ values: [Double]) -> Double { values.reduce(0) { $0 + $1 * $1 }.squareRoot() }

    @Test func globalNormMatchesDoubleSum() {
        var random = TestRandom(seed: 41)
        // Counts not multiples of the kernel's four partial sums, and an empty buffer.
        for count in [0, 1, 2, 3, 5, 1001] {
            let values = random.doubles(count, -3, 3)
            let norm = GradientClipping.globalNorm(values.floats, count: count)
            #expect(maxRelativeError([norm], [Self.norm(values)]) < 1e-6, "count \(count)")
        }
        #expect(GradientClipping.globalNorm([3, 4], count: 2) == 5)
        #expect(GradientClipping.globalNorm([1, 1, 1, 1, 1, 1, 1, 1, 1], count: 9) == 3)
    }

    /// 2²⁴ + 3 values of 1: a Float running sum would stop growing at 2²⁴; Double gets √(2²⁴ + 3) right.
    @Test func globalNormDoesNotLoseSmallTerms() {
        let count = (1 << 24) + 3
        let ones = [Float](repeating: 1, count: count)
        let norm = GradientClipping.globalNorm(ones, count: count)
        #expect(maxRelativeError([norm], [Double(count).squareRoot()]) < 1e-7)
    }

    @Test func clipsWhenNormIsAboveMax() {
        var random = TestRandom(seed: 42)
        let values = random.doubles(257, -3, 3)
        var gradients = values.floats
        let norm = GradientClipping.globalNorm(gradients, count: gradients.count)
        let maxNorm: Float = 1
        let factor = GradientClipping.clip(&gradients, count: gradients.count, norm: norm, maxNorm: maxNorm)
        let expectedFactor = Double(maxNorm) / (Double(norm) + 1e-6)
        #expect(factor < 1)
        #expect(maxRelativeError([factor], [expectedFactor]) < 1e-6)
        #expect(maxRelativeError(gradients, values.map { $0 * expectedFactor }, floor: 1e-3) < 1e-6)
        // The clipped gradients have norm maxNorm, less the 1e-6 PyTorch adds against division by zero.
        let newNorm = GradientClipping.globalNorm(gradients, count: gradients.count)
        #expect(abs(Double(newNorm) - Double(maxNorm)) < 1e-5)
    }

    @Test func leavesGradientsAloneWhenNormIsBelowMax() {
        var random = TestRandom(seed: 43)
        let original = random.doubles(100, -0.05, 0.05).floats
        var gradients = original
        let norm = GradientClipping.globalNorm(gradients, count: gradients.count)
        #expect(norm < 1)
        let factor = GradientClipping.clip(&gradients, count: gradients.count, norm: norm, maxNorm: 1)
        #expect(factor == 1)
        #expect(gradients == original)
    }

    /// At `norm == maxNorm` the 1e-6 makes the factor just under 1, so PyTorch scales (by 1 − 1e-6).
    @Test func normEqualToMaxIsScaledByPyTorchsRule() {
        var gradients: [Float] = [3, 4]
        let factor = GradientClipping.clip(&gradients, count: 2, norm: 5, maxNorm: 5)
        #expect(factor < 1 && factor == 5 / (5 + 1e-6))
        #expect(gradients == [3 * factor, 4 * factor])
    }
}
