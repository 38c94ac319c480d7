import LockstepTestSupport
import RealModule
import Testing

@testable import LockstepKernels

/// Rotary embedding against its Double reference, its inverse, finite differences and its defining property
/// (query–key dot products depend on the position difference only). Shapes cover hs = 2 (one pair), rows
/// spanning several sequences (`r % time`), a position offset, a row stride wider than the rotated heads (the
/// tail must stay untouched, as V does in the model) and Llama's theta 10,000 and 500,000.
/// Tolerances: forward 1e-5 relative, absolute below 1 (Float table entries and two products);
/// forward then backward 1e-5; backward 1e-3 relative against Double finite differences, as elsewhere;
/// dot products 1e-5 relative to the product of the norms (Float rotations).
@Suite struct RotaryTests {
    typealias Shape = (rows: Int, time: Int, rowStride: Int, heads: Int, headSize: Int, offset: Int)
    static let shapes: [Shape] = [
        (1, 1, 2, 1, 2, 0), (5, 5, 8, 2, 4, 0), (6, 3, 14, 3, 4, 2), (8, 4, 40, 2, 16, 7), (4, 4, 24, 3, 6, 100),
    ]

    static func table(_ shape: Shape, theta: Double) -> RotaryTable {
        RotaryTable(headSize: shape.headSize, maxPositions: min(shape.rows, shape.time) + shape.offset, theta: theta)
    }

    @Test(arguments: [10_000.0, 500_000.0])
    func forwardMatchesReference(theta: Double) {
        var random = TestRandom(seed: 121)
        for shape in Self.shapes {
            let (rows, time, stride, heads, hs, offset) = shape
            let x = random.doubles(rows * stride, -2, 2)
            let expected = Rotary.forwardReference(
                x, rows: rows, time: time, rowStride: stride, heads: heads, headSize: hs, theta: theta,
                positionOffset: offset)
            var out = x.floats
            Rotary.forward(
                &out, rows: rows, time: time, rowStride: stride, heads: heads, table: Self.table(shape, theta: theta),
                positionOffset: offset)
            #expect(maxRelativeError(out, expected, floor: 1) < 1e-5, "\(shape)")
            // The columns past the rotated heads are left exactly as they were.
            var untouched = true
            for r in 0..<rows {
                for i in (heads * hs)..<stride where out[r * stride + i] != Float(x[r * stride + i]) { untouched = false }
            }
            #expect(untouched, "tail \(shape)")
        }
    }

    /// Position 0 is the identity; at position 1 with hs = 2 the angle is 1 radian.
    @Test func knownAngles() {
        let table = RotaryTable(headSize: 2, maxPositions: 2, theta: 10_000)
        var x: [Float] = [1, 2, 1, 2]
        Rotary.forward(&x, rows: 2, time: 2, rowStride: 2, heads: 1, table: table)
        let c = Double.cos(1), s = Double.sin(1)
        #expect(maxRelativeError(x, [1, 2, c - 2 * s, 2 * c + s]) < 1e-6)
    }

    @Test func backwardInvertsForward() {
        var random = TestRandom(seed: 122)
        for shape in Self.shapes {
            let (rows, time, stride, heads, _, offset) = shape
            let x = random.doubles(rows * stride, -2, 2)
            let table = Self.table(shape, theta: 10_000)
            var y = x.floats
            Rotary.forward(&y, rows: rows, time: time, rowStride: stride, heads: heads, table: table, positionOffset: offset)
            Rotary.backward(&y, rows: rows, time: time, rowStride: stride, heads: heads, table: table, positionOffset: offset)
            #expect(maxRelativeError(y, x, floor: 1) < 1e-5, "\(shape)")
        }
    }

    /// Backward rewrites its buffer (dOut in, dX out): it is checked against the gradient of `Σ rotate(x)·dOut`.
    @Test func backwardMatchesFiniteDifferences() {
        var random = TestRandom(seed: 123)
        for shape in Self.shapes {
            let (rows, time, stride, heads, hs, offset) = shape
            let x = random.doubles(rows * stride, -2, 2), dOut = random.doubles(rows * stride)
            let expected = numericalGradient(at: x) {
                dot(
                    Rotary.forwardReference(
                        $0, rows: rows, time: time, rowStride: stride, heads: heads, headSize: hs, theta: 10_000,
                        positionOffset: offset),
                    dOut)
            }
            var gradient = dOut.floats
            Rotary.backward(
                &gradient, rows: rows, time: time, rowStride: stride, heads: heads,
                table: Self.table(shape, theta: 10_000), positionOffset: offset)
            #expect(maxRelativeError(gradient, expected) < 1e-3, "\(shape)")
        }
    }

    /// q at position p against k at position p' gives the same dot product for every pair with p − p' fixed.
    @Test func dotProductsDependOnThePositionDifferenceOnly() {
        var random = TestRandom(seed: 124)
        let hs = 16, positions = 40
        let table = RotaryTable(headSize: hs, maxPositions: positions, theta: 10_000)
        let q = random.doubles(hs, -2, 2).floats, k = random.doubles(hs, -2, 2).floats
        // Row p holds q (head 0) and k (head 1), both rotated to position p.
        var rows = [Float]()
        for _ in 0..<positions { rows += q + k }
        Rotary.forward(&rows, rows: positions, time: positions, rowStride: 2 * hs, heads: 2, table: table)
        func rotatedDot(query p: Int, key s: Int) -> Double {
            (0..<hs).reduce(0.0) { $0 + Double(rows[p * 2 * hs + $1]) * Double(rows[s * 2 * hs + hs + $1]) }
        }
        let norms = (q.reduce(0.0) { $0 + Double($1 * $1) } * k.reduce(0.0) { $0 + Double($1 * $1) }).squareRoot()
        var worst = 0.0, differs = false
        for difference in [0, 1, 5, 17] {
            let first = rotatedDot(query: difference, key: 0)
            for s in stride(from: 1, to: positions - difference, by: 3) {
                worst = max(worst, abs(rotatedDot(query: s + difference, key: s) - first) / norms)
            }
            // A non-zero difference must change the product (else the test would pass for no rotation at all).
            if difference > 0 && abs(first - rotatedDot(query: 0, key: 0)) > 1e-3 * norms { differs = true }
        }
        #expect(worst < 1e-5, "worst \(worst)")
        #expect(differs)
    }
}
