import COpenBLAS
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

    /// Chunk boundaries depend on the size only: every kernel that runs over `ComputeThreads` (LayerNorm,
    /// RMSNorm, SiLU gating, rotary, GELU, residual, embedding, attention (grouped-query too), matmul's bias
    /// paths, softmax cross-entropy, gradient norm and clipping, AdamW) gives the same bits with 1, 2 and 3
    /// threads. Sizes are large enough that each one really splits into several chunks.
    @Test func kernelsGiveTheSameBitsForAnyThreadCount() {
        var random = TestRandom(seed: 75)
        let rows = 300, channels = 96
        let x = random.doubles(rows * channels, -2, 2).floats, dy = random.doubles(rows * channels).floats
        let weight = random.doubles(channels, 0.5, 1.5).floats, bias = random.doubles(channels).floats
        let gradient = random.doubles(200_003).floats
        // Attention: (B, T, 3C) with 4 heads.
        let batch = 4, time = 64, attentionChannels = 64, heads = 4
        let qkv = random.doubles(batch * time * 3 * attentionChannels, -1, 1).floats
        let dAttentionOut = random.doubles(batch * time * attentionChannels).floats
        let gqaQKV = random.doubles(batch * time * 2 * attentionChannels, -1, 1).floats
        let rotaryTable = RotaryTable(headSize: 24, maxPositions: time, theta: 10_000)
        // Embedding: vocabulary 50, context 64.
        let vocabulary = 50
        let tokens: [Int32] = (0..<(batch * time)).map { _ in Int32(random.uniform(0, Double(vocabulary) - 0.001)) }
        let wte = random.doubles(vocabulary * channels).floats, wpe = random.doubles(time * channels).floats
        let dEmbedding = random.doubles(batch * time * channels).floats
        // Softmax cross-entropy: 600 rows of a 257-entry vocabulary, some rows ignored.
        let ceRows = 600, ceVocab = 257
        let logits = random.doubles(ceRows * ceVocab, -4, 4).floats
        let targets: [Int32] = (0..<ceRows).map { $0 % 7 == 3 ? -100 : Int32($0 * 31 % ceVocab) }
        // Matmul with a bias: (rows, 96) x (96, 200).
        let outChannels = 200
        let matmulWeight = random.doubles(channels * outChannels, -0.2, 0.2).floats
        let matmulBias = random.doubles(outChannels).floats
        let dMatmul = random.doubles(rows * outChannels).floats
        // AdamW over 200,003 parameters.
        let parameters = random.doubles(gradient.count).floats
        let m0 = random.doubles(gradient.count, -0.01, 0.01).floats, v0 = random.doubles(gradient.count, 0, 0.01).floats

        func run() -> [String: [Float]] {
            var results: [String: [Float]] = [:]
            var out = [Float](repeating: 0, count: rows * channels)
            var mean = [Float](repeating: 0, count: rows), rstd = [Float](repeating: 0, count: rows)
            LayerNorm.forward(
                out: &out, mean: &mean, rstd: &rstd, input: x, weight: weight, bias: bias, rows: rows, channels: channels)
            var dx = [Float](repeating: 0, count: rows * channels)
            var dWeight = [Float](repeating: 0, count: channels), dBias = [Float](repeating: 0, count: channels)
            LayerNorm.backward(
                dInput: &dx, dWeight: &dWeight, dBias: &dBias, dOut: dy, input: x, weight: weight, mean: mean,
                rstd: rstd, rows: rows, channels: channels)
            results["layernorm"] = out + mean + rstd + dx + dWeight + dBias

            var rmsOut = [Float](repeating: 0, count: rows * channels), rmsRstd = [Float](repeating: 0, count: rows)
            RMSNorm.forward(
                out: &rmsOut, rstd: &rmsRstd, input: x, weight: weight, rows: rows, channels: channels, eps: 1e-5)
            var rmsDx = [Float](repeating: 0, count: rows * channels), rmsDWeight = [Float](repeating: 0, count: channels)
            RMSNorm.backward(
                dInput: &rmsDx, dWeight: &rmsDWeight, dOut: dy, input: x, weight: weight, rstd: rmsRstd, rows: rows,
                channels: channels)
            results["rmsnorm"] = rmsOut + rmsRstd + rmsDx + rmsDWeight

            // SiLU gating over (1,000, 2·100), rotary over (300, 96) rows as 4 heads of 24 (table of 64 positions).
            var gated = [Float](repeating: 0, count: 100_000), dGateUp = [Float](repeating: 0, count: 200_000)
            SiLUGating.forward(out: &gated, gateUp: gradient, rows: 1_000, hidden: 100)
            SiLUGating.backward(dGateUp: &dGateUp, gateUp: gradient, dOut: parameters, rows: 1_000, hidden: 100)
            var rotated = x, dRotated = dy
            Rotary.forward(&rotated, rows: rows, time: time, rowStride: channels, heads: 4, table: rotaryTable)
            Rotary.backward(&dRotated, rows: rows, time: time, rowStride: channels, heads: 4, table: rotaryTable)
            results["silu gating"] = gated + dGateUp
            results["rotary"] = rotated + dRotated
            results["norm"] = [GradientClipping.globalNorm(gradient, count: gradient.count)]

            var clipped = gradient
            let coefficient = GradientClipping.clip(&clipped, count: clipped.count, norm: 10, maxNorm: 1)
            results["clip"] = clipped + [coefficient]

            var gelu = [Float](repeating: 0, count: gradient.count), dGelu = gelu
            GELU.forward(out: &gelu, input: gradient, count: gradient.count)
            GELU.backward(dInput: &dGelu, input: gradient, dOut: parameters, count: gradient.count)
            results["gelu"] = gelu + dGelu

            var sum = [Float](repeating: 0, count: gradient.count)
            Residual.forward(out: &sum, a: gradient, b: parameters, count: gradient.count)
            var dA = m0, dB = v0
            Residual.backward(dA: &dA, dB: &dB, dOut: gradient, count: gradient.count)
            results["residual"] = sum + dA + dB

            var embedded = [Float](repeating: 0, count: batch * time * channels)
            Embedding.forward(out: &embedded, tokens: tokens, wte: wte, wpe: wpe, batch: batch, time: time, channels: channels)
            var dWte = [Float](repeating: 0, count: wte.count), dWpe = [Float](repeating: 0, count: wpe.count)
            Embedding.backward(dWte: &dWte, dWpe: &dWpe, dOut: dEmbedding, tokens: tokens, batch: batch, time: time, channels: channels)
            results["embedding"] = embedded + dWte + dWpe

            var attended = [Float](repeating: 0, count: batch * time * attentionChannels)
            var att = [Float](repeating: 0, count: batch * heads * time * time)
            Attention.forward(
                out: &attended, att: &att, qkv: qkv, batch: batch, time: time, channels: attentionChannels, heads: heads)
            var dQKV = [Float](repeating: 0, count: qkv.count), scratch = [Float](repeating: 0, count: att.count)
            Attention.backward(
                dQKV: &dQKV, scratch: &scratch, dOut: dAttentionOut, qkv: qkv, att: att, batch: batch, time: time,
                channels: attentionChannels, heads: heads)
            results["attention"] = attended + att + dQKV

            // Grouped-query attention, 4 query heads sharing 2 key/value heads of 16: rows of (4 + 2·2)·16.
            var gqaOut = [Float](repeating: 0, count: batch * time * attentionChannels)
            var gqaAtt = [Float](repeating: 0, count: batch * heads * time * time)
            Attention.forward(
                out: &gqaOut, att: &gqaAtt, qkv: gqaQKV, batch: batch, time: time, channels: attentionChannels,
                heads: heads, keyValueHeads: 2)
            var gqaD = [Float](repeating: 0, count: gqaQKV.count), gqaScratch = [Float](repeating: 0, count: gqaAtt.count)
            Attention.backward(
                dQKV: &gqaD, scratch: &gqaScratch, dOut: dAttentionOut, qkv: gqaQKV, att: gqaAtt, batch: batch,
                time: time, channels: attentionChannels, heads: heads, keyValueHeads: 2)
            results["grouped-query attention"] = gqaOut + gqaAtt + gqaD

            var product = [Float](repeating: 0, count: rows * outChannels)
            Matmul.forward(
                out: &product, input: x, weight: matmulWeight, bias: matmulBias, rows: rows, inChannels: channels,
                outChannels: outChannels, layout: .inputMajor)
            var dInput = [Float](repeating: 0, count: rows * channels)
            var dMatmulWeight = [Float](repeating: 0, count: matmulWeight.count), dMatmulBias = [Float](repeating: 0, count: outChannels)
            Matmul.backward(
                dInput: &dInput, dWeight: &dMatmulWeight, dBias: &dMatmulBias, dOut: dMatmul, input: x, weight: matmulWeight,
                rows: rows, inChannels: channels, outChannels: outChannels, layout: .inputMajor)
            results["matmul forward"] = product
            results["matmul dInput"] = dInput
            results["matmul dWeight"] = dMatmulWeight
            results["matmul dBias"] = dMatmulBias

            var losses = [Float](repeating: 0, count: ceRows), probabilities = [Float](repeating: 0, count: logits.count)
            let (meanLoss, counted) = SoftmaxCrossEntropy.forward(
                losses: &losses, probabilities: &probabilities, logits: logits, targets: targets, rows: ceRows, vocab: ceVocab)
            var dLogits = [Float](repeating: 0, count: logits.count)
            SoftmaxCrossEntropy.backward(
                dLogits: &dLogits, probabilities: probabilities, targets: targets, rows: ceRows, vocab: ceVocab, scale: 0.5)
            results["cross-entropy"] = losses + probabilities + dLogits + [meanLoss, Float(counted)]

            var p = parameters, m = m0, v = v0
            for step in 1...3 {
                AdamW.update(
                    parameters: &p, gradients: gradient, m: &m, v: &v, count: p.count, step: step, learningRate: 1e-3,
                    settings: AdamWSettings(), applyWeightDecay: step != 2, gradientScale: 0.75)
            }
            results["adamw"] = p + m + v
            return results
        }
        // OpenBLAS's own sgemm is not bit-identical across its thread counts (it splits products differently;
        // seen on 0.3.21 for these shapes), so its count stays as it is (the tests share one process, and other
        // tests' products must not change under them) while Lockstep's kernels, matmul's bias and dBias loops and
        // attention's per-head softmax included, run on 1, 2 and 3 threads.
        let before = ComputeThreads.current
        defer { ComputeThreads.setKernelThreads(before) }
        ComputeThreads.setKernelThreads(1)
        let serial = run()
        for threads in [2, 3] {
            ComputeThreads.setKernelThreads(threads)
            let parallel = run()
            #expect(Set(parallel.keys) == Set(serial.keys))
            for (kernel, values) in serial {
                let other = parallel[kernel] ?? []
                // Compare bit patterns, so NaNs (none expected) would count as equal only when identical.
                let same = values.map(\.bitPattern) == other.map(\.bitPattern)
                #expect(same, "\(kernel) differs with \(threads) threads")
            }
        }
    }

    /// `ComputeThreads.zero` clears every value of its buffer and nothing beside it, whatever the thread count,
    /// for a size that the chunks do not divide and for an empty buffer.
    @Test func zeroClearsExactlyTheBufferOnAnyThreadCount() {
        let before = ComputeThreads.current
        defer { ComputeThreads.setKernelThreads(before) }
        for threads in [1, 2, 3] {
            ComputeThreads.setKernelThreads(threads)
            for count in [0, 7, 200_001] {
                var values = [Float](repeating: 1.5, count: count + 2)
                values.withUnsafeMutableBufferPointer { all in
                    ComputeThreads.zero(UnsafeMutableBufferPointer(rebasing: all[1..<(count + 1)]))
                }
                #expect(values.first == 1.5 && values.last == 1.5, "\(threads) threads, \(count) values")
                #expect(values.dropFirst().dropLast().allSatisfy { $0 == 0 }, "\(threads) threads, \(count) values")
            }
        }
    }
}
