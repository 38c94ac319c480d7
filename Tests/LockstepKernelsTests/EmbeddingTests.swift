import LockstepTestSupport
import Testing

@testable import LockstepKernels

/// Token + position embedding against its reference and finite differences. The vocabulary is small so
/// tokens repeat (the backward must sum their rows), and maxT > T so unused position rows must stay untouched.
/// Tolerances: forward 1e-5 relative, absolute below 1; backward 1e-3 relative against Double finite
/// differences, as for Matmul.
@Suite struct EmbeddingTests {
    static let shapes: [(batch: Int, time: Int, channels: Int, vocabulary: Int, maxTime: Int)] = [
        (1, 1, 1, 1, 1), (1, 5, 12, 3, 8), (2, 5, 12, 4, 5), (3, 4, 7, 50, 6),
    ]

    static func tokens(_ random: inout TestRandom, _ count: Int, below vocabulary: Int) -> [Int32] {
        (0..<count).map { _ in Int32(random.int(below: vocabulary)) }
    }

    @Test func forwardMatchesReference() {
        var random = TestRandom(seed: 41)
        for shape in Self.shapes {
            let (b, t, c) = (shape.batch, shape.time, shape.channels)
            let tokens = Self.tokens(&random, b * t, below: shape.vocabulary)
            let wte = random.doubles(shape.vocabulary * c), wpe = random.doubles(shape.maxTime * c)
            let expected = Embedding.forwardReference(tokens: tokens, wte: wte, wpe: wpe, batch: b, time: t, channels: c)
            var out = [Float](repeating: .nan, count: b * t * c)
            Embedding.forward(
                out: &out, tokens: tokens, wte: wte.floats, wpe: wpe.floats, batch: b, time: t, channels: c)
            #expect(maxRelativeError(out, expected, floor: 1) < 1e-5, "shape \(shape)")
        }
    }

    @Test func backwardMatchesFiniteDifferences() {
        var random = TestRandom(seed: 42)
        for shape in Self.shapes {
            let (b, t, c) = (shape.batch, shape.time, shape.channels)
            let tokens = Self.tokens(&random, b * t, below: shape.vocabulary)
            let wte = random.doubles(shape.vocabulary * c), wpe = random.doubles(shape.maxTime * c)
            let dOut = random.doubles(b * t * c)
            func loss(_ wte: [Double], _ wpe: [Double]) -> Double {
                dot(Embedding.forwardReference(tokens: tokens, wte: wte, wpe: wpe, batch: b, time: t, channels: c), dOut)
            }
            let expectedWte = numericalGradient(at: wte) { loss($0, wpe) }
            let expectedWpe = numericalGradient(at: wpe) { loss(wte, $0) }

            // Gradients start non-zero to check that backward accumulates rather than overwrites.
            var dWte = [Float](repeating: 0.5, count: wte.count), dWpe = [Float](repeating: 0.5, count: wpe.count)
            Embedding.backward(dWte: &dWte, dWpe: &dWpe, dOut: dOut.floats, tokens: tokens, batch: b, time: t, channels: c)
            #expect(maxRelativeError(dWte, expectedWte.map { $0 + 0.5 }) < 1e-3, "dWte \(shape)")
            #expect(maxRelativeError(dWpe, expectedWpe.map { $0 + 0.5 }) < 1e-3, "dWpe \(shape)")
        }
    }
}
