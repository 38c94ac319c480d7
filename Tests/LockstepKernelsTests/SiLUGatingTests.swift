import LockstepTestSupport
import RealModule
import Testing

@testable import LockstepKernels

/// SiLU gating against its reference and finite differences, with I not a multiple of 8 and I = 1, and
/// extreme gates (±100, ±1000) that must give finite values.
/// Tolerances: forward 1e-5 relative, absolute below 1 (VectorMath.exp is within 2 ulp);
/// backward 1e-3 relative against Double finite differences, as for GELU.
@Suite struct SiLUGatingTests {
    static let shapes: [(rows: Int, hidden: Int)] = [(1, 1), (1, 8), (3, 13), (4, 37), (2, 64)]

    @Test func forwardMatchesReference() {
        var random = TestRandom(seed: 131)
        for (n, i) in Self.shapes {
            let gateUp = random.doubles(n * 2 * i, -6, 6)
            let expected = SiLUGating.forwardReference(gateUp: gateUp, rows: n, hidden: i)
            var out = [Float](repeating: .nan, count: n * i)
            SiLUGating.forward(out: &out, gateUp: gateUp.floats, rows: n, hidden: i)
            #expect(maxRelativeError(out, expected, floor: 1) < 1e-5, "out \(n)x\(i)")
        }
    }

    /// silu(x) = x·sigmoid(x), checked at a few points by hand: silu(0) = 0, silu(1) = 1/(1 + e⁻¹).
    @Test func knownValues() {
        let gateUp: [Float] = [0, 1, -1, 2, 3, 0.5]
        var out = [Float](repeating: 0, count: 3)
        SiLUGating.forward(out: &out, gateUp: gateUp, rows: 1, hidden: 3)
        let sigmoid = { (x: Double) in 1 / (1 + Double.exp(-x)) }
        #expect(maxRelativeError(out, [0, 3 * sigmoid(1), -0.5 * sigmoid(-1)]) < 1e-6)
    }

    @Test func extremeGatesStayFinite() {
        let gates: [Float] = [100, -100, 1000, -1000, 88, -88, 90, -90]
        let hidden = gates.count
        let gateUp = gates + [Float](repeating: 2, count: hidden)
        var out = [Float](repeating: .nan, count: hidden)
        SiLUGating.forward(out: &out, gateUp: gateUp, rows: 1, hidden: hidden)
        var dGateUp = [Float](repeating: 0, count: 2 * hidden)
        SiLUGating.backward(
            dGateUp: &dGateUp, gateUp: gateUp, dOut: [Float](repeating: 1, count: hidden), rows: 1, hidden: hidden)
        #expect(out.allSatisfy { $0.isFinite } && dGateUp.allSatisfy { $0.isFinite }, "\(out) \(dGateUp)")
        let expected = SiLUGating.forwardReference(gateUp: gateUp.doubles, rows: 1, hidden: hidden)
        #expect(maxRelativeError(out, expected, floor: 1) < 1e-5)
        // Large positive gates: silu(x) = x, derivative 1; large negative: both 0.
        #expect(abs(dGateUp[0] - 2) < 1e-5 && abs(dGateUp[1]) < 1e-5, "dGate \(dGateUp)")
        #expect(abs(dGateUp[hidden] - 100) < 1e-4 && abs(dGateUp[hidden + 1]) < 1e-5, "dUp \(dGateUp)")
    }

    @Test func backwardMatchesFiniteDifferences() {
        var random = TestRandom(seed: 132)
        for (n, i) in Self.shapes {
            let gateUp = random.doubles(n * 2 * i, -6, 6), dOut = random.doubles(n * i)
            let expected = numericalGradient(at: gateUp) {
                dot(SiLUGating.forwardReference(gateUp: $0, rows: n, hidden: i), dOut)
            }
            // dGateUp starts non-zero to check that backward accumulates rather than overwrites.
            var dGateUp = [Float](repeating: 0.5, count: gateUp.count)
            SiLUGating.backward(dGateUp: &dGateUp, gateUp: gateUp.floats, dOut: dOut.floats, rows: n, hidden: i)
            #expect(maxRelativeError(dGateUp, expected.map { $0 + 0.5 }) < 1e-3, "dGateUp \(n)x\(i)")
        }
    }
}
