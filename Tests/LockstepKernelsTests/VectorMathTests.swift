import Foundation
import LockstepTestSupport
import Testing

@testable import LockstepKernels

/// The vector `exp`, `tanh`, softmax and dot product against Double, and the thread-count independence of
/// the chunked kernels. Tolerances: `exp` 2.5e-7 relative (2 ulp, Float's ulp at 1 is 1.2e-7) over the
/// whole normal range; `tanh` 2e-7 absolute; softmax 5e-6 relative per probability (exp, a Float sum of
/// up to 1,003 terms and the reciprocal each add a few ulp).
@Suite struct VectorMathTests {
    /// Evaluates `f` eight at a time over `inputs`.
    static func map(_ inputs: [Float], _ f: (VectorMath.Vector) -> VectorMath.Vector) -> [Float] {
        var out = [Float](repeating: .nan, count: inputs.count)
        inputs.withUnsafeBufferPointer { x in
            out.withUnsafeMutableBufferPointer { y in
                var i = 0
                while i < inputs.count {
                    let lanes = min(8, inputs.count - i)
                    VectorMath.store(f(VectorMath.load(x.baseAddress! + i, count: lanes)), to: y.baseAddress! + i, count: lanes)
                    i += 8
                }
            }
        }
        return out
    }

    @Test func expIsWithinTwoUlpsOverTheNormalRange() {
        var random = TestRandom(seed: 71)
        // Dense near 0 (softmax's usual inputs) and across the whole range, plus the reduction's boundaries.
        var inputs = random.doubles(20_000, -87, 88).map(Float.init) + random.doubles(20_000, -1, 1).map(Float.init)
        inputs += [0, -0.0, 0.346_573_6, -0.346_573_6, 0.693_147_2, -87.3, 88.3, 1e-8, -1e-8]
        let actual = Self.map(inputs, VectorMath.exp)
        let worst = zip(inputs, actual).map { x, y in abs(Double(y) - Foundation.exp(Double(x))) / Foundation.exp(Double(x)) }.max()!
        #expect(worst < 2.5e-7, "largest relative error \(worst)")
    }

    @Test func expLimits() {
        let inputs: [Float] = [-.infinity, -1000, -87.4, .infinity, 1000, .nan, 0]
        let actual = Self.map(inputs, VectorMath.exp)
        #expect(actual[0] == 0 && actual[1] == 0 && actual[2] == 0)
        #expect(actual[3] > 1e38 && actual[4] > 1e38 && actual[3].isFinite)
        #expect(actual[5].isNaN)
        #expect(actual[6] == 1)
    }

    @Test func tanhIsWithinTwoTenMillionthsAbsolute() {
        var random = TestRandom(seed: 72)
        let inputs = (random.doubles(20_000, -12, 12) + random.doubles(5_000, -0.01, 0.01)).map(Float.init) + [0, 50, -50]
        let actual = Self.map(inputs, VectorMath.tanh)
        let worst = zip(inputs, actual).map { x, y in abs(Double(y) - Foundation.tanh(Double(x))) }.max()!
        #expect(worst < 2e-7, "largest absolute error \(worst)")
        #expect(actual[actual.count - 2] == 1 && actual[actual.count - 1] == -1)
    }

    /// Row lengths around the vector width, in place and out of place.
    @Test func softmaxMatchesDouble() {
        var random = TestRandom(seed: 73)
        for count in [1, 2, 7, 8, 9, 16, 31, 100, 1003] {
            let row = random.doubles(count, -20, 20)
            let maximum = row.max()!
            let sum = row.reduce(0) { $0 + Foundation.exp($1 - maximum) }
            let expected = row.map { Foundation.exp($0 - maximum) / sum }
            var out = [Float](repeating: .nan, count: count)
            let result = VectorMath.softmax(row.floats, into: &out, count: count)
            #expect(result.maximum == Float(maximum), "count \(count)")
            #expect(maxRelativeError([result.sum], [sum]) < 1e-6, "count \(count)")
            #expect(maxRelativeError(out, expected, floor: 1e-30) < 5e-6, "count \(count)")
            var inPlace = row.floats
            inPlace.withUnsafeMutableBufferPointer { buffer in
                _ = VectorMath.softmax(buffer.baseAddress!, into: buffer.baseAddress!, count: count)
            }
            #expect(inPlace == out, "in place, count \(count)")
        }
    }

    @Test func dotMatchesDouble() {
        var random = TestRandom(seed: 74)
        for count in [0, 1, 5, 8, 13, 64, 257] {
            let a = random.doubles(count), b = random.doubles(count)
            let result = VectorMath.dot(a.floats, b.floats, count: count)
            #expect(abs(Double(result) - dot(a, b)) < 1e-5, "count \(count)")
        }
    }

    /// Chunk boundaries depend on the size only: reductions give the same bits with 1 thread as with 2.
    @Test func kernelsGiveTheSameBitsForAnyThreadCount() {
        var random = TestRandom(seed: 75)
        let rows = 300, channels = 96
        let x = random.doubles(rows * channels, -2, 2).floats, dy = random.doubles(rows * channels).floats
        let weight = random.doubles(channels, 0.5, 1.5).floats, bias = random.doubles(channels).floats
        let gradient = random.doubles(200_003).floats
        func run() -> [[Float]] {
            var out = [Float](repeating: 0, count: rows * channels)
            var mean = [Float](repeating: 0, count: rows), rstd = [Float](repeating: 0, count: rows)
            LayerNorm.forward(
                out: &out, mean: &mean, rstd: &rstd, input: x, weight: weight, bias: bias, rows: rows, channels: channels)
            var dx = [Float](repeating: 0, count: rows * channels)
            var dWeight = [Float](repeating: 0, count: channels), dBias = [Float](repeating: 0, count: channels)
            LayerNorm.backward(
                dInput: &dx, dWeight: &dWeight, dBias: &dBias, dOut: dy, input: x, weight: weight, mean: mean,
                rstd: rstd, rows: rows, channels: channels)
            let norm = GradientClipping.globalNorm(gradient, count: gradient.count)
            return [out, dx, dWeight, dBias, [norm]]
        }
        let before = ComputeThreads.current
        defer { ComputeThreads.set(before) }
        ComputeThreads.set(1)
        let serial = run()
        ComputeThreads.set(2)
        let parallel = run()
        #expect(serial == parallel)
    }
}
