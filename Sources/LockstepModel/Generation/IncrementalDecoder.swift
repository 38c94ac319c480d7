import Foundation
import LockstepKernels

/// Runs a GPT one token at a time over a key/value cache, so that each new token costs O(T) attention
/// work instead of a forward pass over the whole sequence. Reads the weights of a `GPT` in place.
///
/// Shapes: the cache holds keys and values `(L, T, C)` for one sequence; every other buffer is one position.
public final class IncrementalDecoder {
    public let model: GPT
    let config: GPTConfig
    /// Positions filled so far; the next token goes at this position.
    public private(set) var length = 0
    let keys: UnsafeMutableBufferPointer<Float>
    let values: UnsafeMutableBufferPointer<Float>
    /// One position's activations: residual `x (C)`, normalized `h (C)`, `qkv (3C)`, attention output `(C)`,
    /// MLP hidden `(4C)` and its GELU, attention probabilities `(T)`, statistics, and logits `(V)`.
    let x, h, qkv, attended, projected, hidden, activated, scores, mean, rstd: UnsafeMutableBufferPointer<Float>
    public let logits: UnsafeMutableBufferPointer<Float>

    public init(model: GPT) {
        self.model = model
        config = model.config
        let c = config.channels, t = config.contextLength, l = config.layerCount
        keys = .allocate(capacity: l * t * c)
        values = .allocate(capacity: l * t * c)
        x = .allocate(capacity: c)
        h = .allocate(capacity: c)
        qkv = .allocate(capacity: 3 * c)
        attended = .allocate(capacity: c)
        projected = .allocate(capacity: c)
        hidden = .allocate(capacity: 4 * c)
        activated = .allocate(capacity: 4 * c)
        scores = .allocate(capacity: t)
        mean = .allocate(capacity: 1)
        rstd = .allocate(capacity: 1)
        logits = .allocate(capacity: config.vocabularySize)
    }

    deinit {
        for buffer in [keys, values, x, h, qkv, attended, projected, hidden, activated, scores, mean, rstd, logits] {
            buffer.deallocate()
        }
    }

    /// Forgets the sequence.
    public func reset() { length = 0 }

    public var isFull: Bool { length == config.contextLength }

    /// The parameter at element `offset` of the buffer (offsets from `ParameterLayout`).
    private func weights(_ offset: Int) -> UnsafePointer<Float> {
        UnsafePointer(model.parameters.baseAddress! + offset)
    }

    /// Appends `token` at the next position and leaves the next-token logits `(V)` in `logits`.
    public func append(_ token: Int32) {
        precondition(!isFull, "the context of \(config.contextLength) positions is full")
        let c = config.channels, heads = config.headCount, headSize = c / heads, t = config.contextLength
        let position = length
        let layout = model.layout
        let wte = weights(layout.wte), wpe = weights(layout.wpe)
        for i in 0..<c {
            x[i] = wte[Int(token) * c + i] + wpe[position * c + i]
        }
        for layer in 0..<config.layerCount {
            let block = layout.blocks[layer]
            LayerNorm.forward(
                out: h.baseAddress!, mean: mean.baseAddress!, rstd: rstd.baseAddress!, input: x.baseAddress!,
                weight: weights(block.ln1Weight), bias: weights(block.ln1Bias), rows: 1, channels: c,
                eps: config.layerNormEpsilon)
            Matmul.forward(
                out: qkv.baseAddress!, input: h.baseAddress!, weight: weights(block.qkvWeight),
                bias: weights(block.qkvBias), rows: 1, inChannels: c, outChannels: 3 * c,
                layout: .inputMajor)
            let cache = layer * t * c
            for i in 0..<c {
                keys[cache + position * c + i] = qkv[c + i]
                values[cache + position * c + i] = qkv[2 * c + i]
            }
            Attention.decodeStep(
                out: attended.baseAddress!, scores: scores.baseAddress!, query: qkv.baseAddress!,
                keys: keys.baseAddress! + cache, values: values.baseAddress! + cache, length: position + 1,
                heads: heads, keyValueHeads: heads, headSize: headSize)
            Matmul.forward(
                out: projected.baseAddress!, input: attended.baseAddress!, weight: weights(block.attentionProjectionWeight),
                bias: weights(block.attentionProjectionBias), rows: 1, inChannels: c, outChannels: c, layout: .inputMajor)
            for i in 0..<c { x[i] += projected[i] }
            LayerNorm.forward(
                out: h.baseAddress!, mean: mean.baseAddress!, rstd: rstd.baseAddress!, input: x.baseAddress!,
                weight: weights(block.ln2Weight), bias: weights(block.ln2Bias), rows: 1, channels: c,
                eps: config.layerNormEpsilon)
            Matmul.forward(
                out: hidden.baseAddress!, input: h.baseAddress!, weight: weights(block.fcWeight),
                bias: weights(block.fcBias), rows: 1, inChannels: c, outChannels: 4 * c, layout: .inputMajor)
            GELU.forward(out: activated.baseAddress!, input: hidden.baseAddress!, count: 4 * c)
            Matmul.forward(
                out: projected.baseAddress!, input: activated.baseAddress!, weight: weights(block.fcProjectionWeight),
                bias: weights(block.fcProjectionBias), rows: 1, inChannels: 4 * c, outChannels: c,
                layout: .inputMajor)
            for i in 0..<c { x[i] += projected[i] }
        }
        LayerNorm.forward(
            out: h.baseAddress!, mean: mean.baseAddress!, rstd: rstd.baseAddress!, input: x.baseAddress!,
            weight: weights(layout.lnfWeight), bias: weights(layout.lnfBias), rows: 1, channels: c,
            eps: config.layerNormEpsilon)
        Matmul.forward(
            out: logits.baseAddress!, input: h.baseAddress!, weight: wte, bias: nil, rows: 1, inChannels: c,
            outChannels: config.vocabularySize, layout: .outputMajor)
        length += 1
    }
}
