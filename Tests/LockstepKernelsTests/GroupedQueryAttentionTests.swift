import LockstepTestSupport
import Testing

@testable import LockstepKernels

/// Grouped-query attention (KV key/value heads shared by groups of NH / KV query heads, row layout
/// `[Q (NH·hs) | K (KV·hs) | V (KV·hs)]`) against the naive reference and finite differences, and the
/// one-position `decodeStep` against the last row of `forward`. Shapes: KV = 1 (multi-query), KV = NH / 2,
/// KV = NH (must be bit-identical to `keyValueHeads: nil`), T = 1, hs not a multiple of 8, and one shape big
/// enough for the parallel softmax path.
/// Tolerances as in `AttentionTests`: forward 1e-5 relative, absolute below 1; backward 1e-3 relative against
/// Double finite differences; decodeStep vs forward 1e-5 (different summation orders in Float).
@Suite struct GroupedQueryAttentionTests {
    typealias Shape = (batch: Int, time: Int, channels: Int, heads: Int, keyValueHeads: Int)
    static let shapes: [Shape] = [
        (1, 1, 4, 2, 1), (1, 5, 12, 4, 2), (2, 5, 12, 4, 1), (2, 4, 20, 4, 2), (1, 3, 6, 6, 3), (2, 3, 8, 2, 2),
    ]
    static let parallelShape: Shape = (2, 24, 32, 4, 2)

    static func width(_ shape: Shape) -> Int {
        (shape.heads + 2 * shape.keyValueHeads) * (shape.channels / shape.heads)
    }

    static func forward(_ qkv: [Float], _ shape: Shape, keyValueHeads: Int?) -> (out: [Float], att: [Float]) {
        let (b, t, c, nh, _) = shape
        var out = [Float](repeating: .nan, count: b * t * c), att = [Float](repeating: .nan, count: b * nh * t * t)
        Attention.forward(
            out: &out, att: &att, qkv: qkv, batch: b, time: t, channels: c, heads: nh, keyValueHeads: keyValueHeads)
        return (out, att)
    }

    @Test func forwardMatchesReference() {
        var random = TestRandom(seed: 151)
        for shape in Self.shapes + [Self.parallelShape] {
            let (b, t, c, nh, kv) = shape
            let qkv = random.doubles(b * t * Self.width(shape), -3, 3)
            let expected = Attention.forwardReference(
                qkv: qkv, batch: b, time: t, channels: c, heads: nh, keyValueHeads: kv)
            let out = Self.forward(qkv.floats, shape, keyValueHeads: kv).out
            #expect(maxRelativeError(out, expected, floor: 1) < 1e-5, "out \(shape)")
        }
    }

    /// The reference itself: with KV heads each repeated NH / KV times (Hugging Face's `repeat_kv`), GQA is
    /// plain multi-head attention over a `(B, T, 3C)` buffer.
    @Test func referenceEqualsRepeatedKeyValueHeads() {
        var random = TestRandom(seed: 152)
        for shape in Self.shapes {
            let (b, t, c, nh, kv) = shape
            let hs = c / nh, width = Self.width(shape)
            let qkv = random.doubles(b * t * width, -3, 3)
            var repeated = [Double]()
            for row in 0..<(b * t) {
                let start = row * width
                repeated += qkv[start..<(start + c)]
                for part in 0..<2 {
                    for h in 0..<nh {
                        let from = start + c + part * kv * hs + (h / (nh / kv)) * hs
                        repeated += qkv[from..<(from + hs)]
                    }
                }
            }
            let grouped = Attention.forwardReference(qkv: qkv, batch: b, time: t, channels: c, heads: nh, keyValueHeads: kv)
            let multiHead = Attention.forwardReference(qkv: repeated, batch: b, time: t, channels: c, heads: nh)
            #expect(maxRelativeError(grouped.floats, multiHead, floor: 1) < 1e-6, "\(shape)")
        }
    }

    @Test func equalKeyValueHeadsAreBitIdenticalToMultiHead() {
        var random = TestRandom(seed: 153)
        let (b, t, c, nh) = (2, 7, 10, 2)
        let shape: Shape = (b, t, c, nh, nh)
        let qkv = random.doubles(b * t * 3 * c, -2, 2).floats, dOut = random.doubles(b * t * c).floats
        let plain = Self.forward(qkv, shape, keyValueHeads: nil), explicit = Self.forward(qkv, shape, keyValueHeads: nh)
        #expect(plain.out == explicit.out && plain.att == explicit.att)
        var dPlain = [Float](repeating: 0.5, count: qkv.count), dExplicit = dPlain
        var scratch = [Float](repeating: .nan, count: plain.att.count)
        Attention.backward(
            dQKV: &dPlain, scratch: &scratch, dOut: dOut, qkv: qkv, att: plain.att, batch: b, time: t, channels: c,
            heads: nh)
        Attention.backward(
            dQKV: &dExplicit, scratch: &scratch, dOut: dOut, qkv: qkv, att: plain.att, batch: b, time: t, channels: c,
            heads: nh, keyValueHeads: nh)
        #expect(dPlain == dExplicit)
    }

    @Test func backwardMatchesFiniteDifferences() {
        var random = TestRandom(seed: 154)
        for shape in Self.shapes {
            let (b, t, c, nh, kv) = shape
            let qkv = random.doubles(b * t * Self.width(shape), -2, 2), dOut = random.doubles(b * t * c)
            let expected = numericalGradient(at: qkv) {
                dot(Attention.forwardReference(qkv: $0, batch: b, time: t, channels: c, heads: nh, keyValueHeads: kv), dOut)
            }
            let qkvF = qkv.floats
            let att = Self.forward(qkvF, shape, keyValueHeads: kv).att
            // dQKV starts non-zero to check that backward accumulates (the shared dK, dV columns included).
            var dQKV = [Float](repeating: 0.5, count: qkv.count)
            var scratch = [Float](repeating: .nan, count: b * nh * t * t)
            Attention.backward(
                dQKV: &dQKV, scratch: &scratch, dOut: dOut.floats, qkv: qkvF, att: att, batch: b, time: t,
                channels: c, heads: nh, keyValueHeads: kv)
            #expect(maxRelativeError(dQKV, expected.map { $0 + 0.5 }) < 1e-3, "dQKV \(shape)")
        }
    }

    /// Runs twice on the parallel path: the shared dK/dV sums must come out bit-identical.
    @Test func backwardIsDeterministic() {
        let shape = Self.parallelShape
        let (b, t, c, nh, kv) = shape
        var random = TestRandom(seed: 155)
        let qkv = random.doubles(b * t * Self.width(shape), -2, 2).floats, dOut = random.doubles(b * t * c).floats
        let att = Self.forward(qkv, shape, keyValueHeads: kv).att
        func run() -> [Float] {
            var dQKV = [Float](repeating: 0.5, count: qkv.count), scratch = [Float](repeating: .nan, count: att.count)
            Attention.backward(
                dQKV: &dQKV, scratch: &scratch, dOut: dOut, qkv: qkv, att: att, batch: b, time: t, channels: c,
                heads: nh, keyValueHeads: kv)
            return dQKV
        }
        #expect(run() == run())
    }

    /// For each sequence, decodeStep at its last position (keys and values gathered into `(T, KV·hs)`) equals
    /// the last row of `forward` over the whole sequence.
    @Test func decodeStepMatchesLastRowOfForward() {
        var random = TestRandom(seed: 156)
        for shape in Self.shapes + [Self.parallelShape] {
            let (b, t, c, nh, kv) = shape
            let hs = c / nh, width = Self.width(shape)
            let qkv = random.doubles(b * t * width, -3, 3).floats
            let out = Self.forward(qkv, shape, keyValueHeads: kv).out
            for sequence in 0..<b {
                var keys = [Float](), values = [Float]()
                for position in 0..<t {
                    let start = (sequence * t + position) * width + c
                    keys += qkv[start..<(start + kv * hs)]
                    values += qkv[(start + kv * hs)..<(start + 2 * kv * hs)]
                }
                let queryStart = (sequence * t + t - 1) * width
                let query = Array(qkv[queryStart..<(queryStart + c)])
                var step = [Float](repeating: .nan, count: c), scores = [Float](repeating: .nan, count: t)
                Attention.decodeStep(
                    out: &step, scores: &scores, query: query, keys: keys, values: values, length: t, heads: nh,
                    keyValueHeads: kv, headSize: hs)
                let lastRow = (sequence * t + t - 1) * c
                #expect(maxRelativeError(step, out[lastRow..<(lastRow + c)].map(Double.init), floor: 1) < 1e-5,
                        "\(shape) sequence \(sequence)")
            }
        }
    }
}
