import LockstepTestSupport
import Testing

@testable import LockstepKernels

/// AdamW against a Double reference written from the textbook form (`m̂`, `v̂`, decay `p −= lr·wd·p`) over
/// several steps, and against one step worked out by hand. Tolerance 1e-6 relative: each step rounds `p`,
/// `m`, `v` to Float once, a few ulps over six steps. Floors: `p` 1e-2; `m` 0.1, because `m` is a running sum
/// of gradients of both signs whose rounding is relative to its terms (`(1 − β1)·|g|` ≈ 0.1 here), not to a
/// sum that happens to cancel near 0; `v` 1e-4 (it has no cancellation: all its terms are positive).
@Suite struct AdamWTests {
    /// The update as the PyTorch documentation writes it, in Double, on Float-representable settings.
    static func reference(
        parameters p: inout [Double], gradients g: [Double], m: inout [Double], v: inout [Double], step: Int,
        learningRate: Float, settings: AdamWSettings, applyWeightDecay: Bool
    ) {
        let lr = Double(learningRate), wd = Double(settings.weightDecay)
        let b1 = Double(settings.beta1), b2 = Double(settings.beta2), eps = Double(settings.epsilon)
        for i in p.indices {
            if applyWeightDecay { p[i] -= lr * wd * p[i] }
            m[i] = b1 * m[i] + (1 - b1) * g[i]
            v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i]
            let mHat = m[i] / (1 - Double.pow(b1, step))
            let vHat = v[i] / (1 - Double.pow(b2, step))
            p[i] -= lr * mHat / (vHat.squareRoot() + eps)
        }
    }

    @Test(arguments: [true, false])
    func severalStepsMatchReference(applyWeightDecay: Bool) {
        var random = TestRandom(seed: 31)
        let count = 37
        let settings = AdamWSettings(beta1: 0.9, beta2: 0.95, epsilon: 1e-8, weightDecay: 0.1)
        let learningRates: [Float] = [6e-4, 3e-3, 1e-2, 2e-3, 1e-4, 5e-2]
        var expectedP = random.doubles(count), expectedM = [Double](repeating: 0, count: count)
        var expectedV = expectedM
        var p = expectedP.floats, m = expectedM.floats, v = expectedV.floats
        for (index, learningRate) in learningRates.enumerated() {
            let step = index + 1
            // Gradients of varied scale and sign, some exactly 0, as real gradients have.
            let gradients = random.doubles(count, -2, 2).enumerated().map { $0.offset % 7 == 3 ? 0 : $0.element }
            Self.reference(
                parameters: &expectedP, gradients: gradients, m: &expectedM, v: &expectedV, step: step,
                learningRate: learningRate, settings: settings, applyWeightDecay: applyWeightDecay)
            AdamW.update(
                parameters: &p, gradients: gradients.floats, m: &m, v: &v, count: count, step: step,
                learningRate: learningRate, settings: settings, applyWeightDecay: applyWeightDecay)
            #expect(maxRelativeError(p, expectedP) < 1e-6, "parameters after step \(step)")
            #expect(maxRelativeError(m, expectedM, floor: 0.1) < 1e-6, "m after step \(step)")
            #expect(maxRelativeError(v, expectedV, floor: 1e-4) < 1e-6, "v after step \(step)")
        }
    }

    /// Step 1 with lr 0.1, β1 0.9, β2 0.999, wd 0.1. Bias correction makes `m̂ = g`, `v̂ = g²`, so the step
    /// is `lr · g / (|g| + ε)`, nearly `lr · sign(g)`, after decay `p · (1 − 0.01)`:
    /// p = 1, g = 0.5 → 0.99 − 0.1 = 0.89; p = −2, g = −3 → −1.98 + 0.1 = −1.88; p = 0.5, g = 0 → 0.495.
    /// The moments are `(1 − β)·g` and `(1 − β2)·g²` with the betas as Float holds them (0.999 is
    /// 0.99900001287 in Float, so `1 − β2` is 0.00099998713, not 0.001).
    @Test(arguments: [true, false])
    func firstStepByHand(applyWeightDecay: Bool) {
        let settings = AdamWSettings(beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0.1)
        var p: [Float] = [1, -2, 0.5], m: [Float] = [0, 0, 0], v: [Float] = [0, 0, 0]
        AdamW.update(
            parameters: &p, gradients: [0.5, -3, 0], m: &m, v: &v, count: 3, step: 1, learningRate: 0.1,
            settings: settings, applyWeightDecay: applyWeightDecay)
        let expected: [Double] = applyWeightDecay ? [0.89, -1.88, 0.495] : [0.9, -1.9, 0.5]
        #expect(maxRelativeError(p, expected) < 1e-6, "\(p)")
        let oneMinusBeta1 = 1 - Double(Float(0.9)), oneMinusBeta2 = 1 - Double(Float(0.999))
        #expect(maxRelativeError(m, [0.5, -3, 0].map { $0 * oneMinusBeta1 }) < 1e-6, "\(m)")
        #expect(maxRelativeError(v, [0.25, 9, 0].map { $0 * oneMinusBeta2 }, floor: 1e-6) < 1e-6, "\(v)")
    }

    /// Only the given range is touched: parameter groups are separate calls on one buffer.
    @Test func updatesOnlyCountElements() {
        var p: [Float] = [1, 1, 1, 1], m: [Float] = [0, 0, 0, 0], v: [Float] = [0, 0, 0, 0]
        AdamW.update(
            parameters: &p, gradients: [1, 1, 1, 1], m: &m, v: &v, count: 3, step: 1, learningRate: 0.1,
            settings: AdamWSettings(), applyWeightDecay: true)
        #expect(p[3] == 1 && m[3] == 0 && v[3] == 0)
        #expect(p[0] < 1)
    }
}
