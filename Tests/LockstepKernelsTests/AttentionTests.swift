import LockstepTestSupport
import Testing

@testable import LockstepKernels

/// Causal attention against its naive reference and finite differences, on small shapes: T = 1, head sizes
/// 1, 2, 4, 5, C not a multiple of 8. A larger shape runs the parallel (batch, head) path, checked against
/// the reference (forward) and against the same kernel run one sequence at a time, on the serial path
/// (backward; finite differences there would be slow through the generic reference).
/// Tolerances: forward 1e-5 relative, absolute below 1 (Float sgemm and expf vs Double loops);
/// saved probabilities: rows sum to 1 within 1e-5 and exact zeros above the diagonal;
/// backward 1e-3 relative against Double finite differences, as for Matmul; parallel vs serial 1e-5.
@Suite struct AttentionTests {
    typealias Shape = (batch: Int, time: Int, channels: Int, heads: Int)
    static let shapes: [Shape] = [(1, 1, 4, 1), (1, 5, 12, 3), (2, 5, 12, 3), (3, 4, 8, 4), (2, 7, 10, 2), (1, 3, 3, 3)]
    /// Big enough for the parallel path; one of its sequences alone is not (checked in the tests).
    static let parallelShape: Shape = (2, 24, 32, 4)

    static func work(_ shape: Shape) -> Int {
        shape.batch * shape.heads * shape.time * shape.time * (shape.channels / shape.heads)
    }

    /// Runs the Float forward and returns `(out, att)`; both start as NaN to prove they are overwritten.
    static func forward(_ qkv: [Float], _ shape: Shape) -> (out: [Float], att: [Float]) {
        let (b, t, c, nh) = shape
        var out = [Float](repeating: .nan, count: b * t * c), att = [Float](repeating: .nan, count: b * nh * t * t)
        Attention.forward(out: &out, att: &att, qkv: qkv, batch: b, time: t, channels: c, heads: nh)
        return (out, att)
    }

    @Test func forwardMatchesReference() {
        var random = TestRandom(seed: 51)
        for shape in Self.shapes + [Self.parallelShape] {
            let (b, t, c, nh) = shape
            // Spread of ±3 makes the softmax far from uniform, so a wrong scale or mask shows.
            let qkv = random.doubles(b * t * 3 * c, -3, 3)
            let expected = Attention.forwardReference(qkv: qkv, batch: b, time: t, channels: c, heads: nh)
            let (out, att) = Self.forward(qkv.floats, shape)
            #expect(maxRelativeError(out, expected, floor: 1) < 1e-5, "out \(shape)")

            var worstRowSum = 0.0, aboveDiagonal = 0
            for square in 0..<(b * nh) {
                for row in 0..<t {
                    let start = (square * t + row) * t
                    worstRowSum = max(worstRowSum, abs(att[start..<(start + row + 1)].reduce(0.0) { $0 + Double($1) } - 1))
                    aboveDiagonal += att[(start + row + 1)..<(start + t)].filter { $0 != 0 }.count
                }
            }
            #expect(worstRowSum < 1e-5, "att rows \(shape)")
            #expect(aboveDiagonal == 0, "att above the diagonal \(shape)")
        }
    }

    @Test func backwardMatchesFiniteDifferences() {
        var random = TestRandom(seed: 52)
        for shape in Self.shapes {
            let (b, t, c, nh) = shape
            let qkv = random.doubles(b * t * 3 * c, -2, 2), dOut = random.doubles(b * t * c)
            let expected = numericalGradient(at: qkv) {
                dot(Attention.forwardReference(qkv: $0, batch: b, time: t, channels: c, heads: nh), dOut)
            }
            let qkvF = qkv.floats
            let att = Self.forward(qkvF, shape).att

            // dQKV starts non-zero to check that backward accumulates; scratch starts NaN to check that
            // backward never reads it before writing.
            var dQKV = [Float](repeating: 0.5, count: qkv.count)
            var scratch = [Float](repeating: .nan, count: b * nh * t * t)
            Attention.backward(
                dQKV: &dQKV, scratch: &scratch, dOut: dOut.floats, qkv: qkvF, att: att, batch: b, time: t,
                channels: c, heads: nh)
            #expect(maxRelativeError(dQKV, expected.map { $0 + 0.5 }) < 1e-3, "dQKV \(shape)")
        }
    }

    @Test func parallelBackwardMatchesSerialPerSequence() {
        let shape = Self.parallelShape
        let (b, t, c, nh) = shape
        let single: Shape = (1, t, c, nh)
        #expect(Self.work(shape) >= Attention.parallelMinimumWork, "shape no longer takes the parallel path")
        #expect(Self.work(single) < Attention.parallelMinimumWork, "one sequence no longer takes the serial path")

        var random = TestRandom(seed: 53)
        let qkv = random.doubles(b * t * 3 * c, -2, 2).floats, dOut = random.doubles(b * t * c).floats
        let att = Self.forward(qkv, shape).att
        var dQKV = [Float](repeating: 0.5, count: qkv.count), scratch = [Float](repeating: .nan, count: att.count)
        Attention.backward(
            dQKV: &dQKV, scratch: &scratch, dOut: dOut, qkv: qkv, att: att, batch: b, time: t, channels: c, heads: nh)

        var expected = [Double]()
        for sequence in 0..<b {
            let qkvSlice = Array(qkv[(sequence * t * 3 * c)..<((sequence + 1) * t * 3 * c)])
            let dOutSlice = Array(dOut[(sequence * t * c)..<((sequence + 1) * t * c)])
            let attSlice = Self.forward(qkvSlice, single).att
            var dSlice = [Float](repeating: 0.5, count: qkvSlice.count)
            var scratchSlice = [Float](repeating: .nan, count: attSlice.count)
            Attention.backward(
                dQKV: &dSlice, scratch: &scratchSlice, dOut: dOutSlice, qkv: qkvSlice, att: attSlice, batch: 1,
                time: t, channels: c, heads: nh)
            expected += dSlice.doubles
        }
        #expect(maxRelativeError(dQKV, expected) < 1e-5)
    }
}
