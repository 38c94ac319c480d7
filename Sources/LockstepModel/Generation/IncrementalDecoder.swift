import Foundation
import LockstepKernels

/// Runs a GPT one token at a time over a key/value cache, so that each new token costs O(T) attention
/// work instead of a forward pass over the whole sequence. Reads the weights of a `GPT` in place and runs its
/// own blocks' parts (`TransformerBlock`) on one position; only attention differs, reading the cache
/// (`Attention.decodeStep`). Rotary positions (Llama) are applied to each new query and key at its position.
///
/// Shapes: the cache holds keys and values `(L, T, KV·hs)` for one sequence; every other buffer is one position.
public final class IncrementalDecoder {
    public let model: GPT
    let config: GPTConfig
    /// Positions filled so far; the next token goes at this position.
    public private(set) var length = 0
    let keys: UnsafeMutableBufferPointer<Float>
    let values: UnsafeMutableBufferPointer<Float>
    /// One position's activations: residual `x (C)`, normalized `h (C)`, `qkv ((NH + 2·KV)·hs)`, attention
    /// output `(C)`, MLP `fc` output and its activation, attention probabilities `(T)`, statistics, and logits `(V)`.
    let x, h, qkv, attended, projected, hidden, activated, scores, mean, rstd: UnsafeMutableBufferPointer<Float>
    public let logits: UnsafeMutableBufferPointer<Float>

    public init(model: GPT) {
        self.model = model
        config = model.config
        let c = config.channels, t = config.contextLength, l = config.layerCount
        let kvWidth = config.keyValueHeads * config.headSize
        let block = model.blocks[0]
        keys = .allocate(capacity: l * t * kvWidth)
        values = .allocate(capacity: l * t * kvWidth)
        x = .allocate(capacity: c)
        h = .allocate(capacity: c)
        qkv = .allocate(capacity: block.attention.qkvWidth)
        attended = .allocate(capacity: c)
        projected = .allocate(capacity: c)
        hidden = .allocate(capacity: block.mlp.fcWidth)
        activated = .allocate(capacity: block.mlp.width)
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

    /// Appends `token` at the next position and leaves the next-token logits `(V)` in `logits`.
    public func append(_ token: Int32) {
        precondition(!isFull, "the context of \(config.contextLength) positions is full")
        let c = config.channels, t = config.contextLength
        let position = length
        let layout = model.layout
        let p = UnsafePointer(model.parameters.baseAddress!)
        let wte = p + layout.wte
        for i in 0..<c { x[i] = wte[Int(token) * c + i] }
        if let wpe = layout.wpe {
            for i in 0..<c { x[i] += p[wpe + position * c + i] }
        }
        for (layer, block) in model.blocks.enumerated() {
            let attention = block.attention
            let kvWidth = attention.keyValueHeads * attention.headSize
            block.norm1.forward(
                out: h.baseAddress!, mean: mean.baseAddress!, rstd: rstd.baseAddress!, input: x.baseAddress!, p: p, rows: 1)
            attention.qkv.forward(out: qkv.baseAddress!, input: h.baseAddress!, p: p, rows: 1)
            if let rotary = attention.rotary {
                Rotary.forward(
                    qkv.baseAddress!, rows: 1, time: 1, rowStride: attention.qkvWidth,
                    heads: attention.heads + attention.keyValueHeads, table: rotary, positionOffset: position)
            }
            let cache = layer * t * kvWidth
            let queryWidth = attention.heads * attention.headSize
            for i in 0..<kvWidth {
                keys[cache + position * kvWidth + i] = qkv[queryWidth + i]
                values[cache + position * kvWidth + i] = qkv[queryWidth + kvWidth + i]
            }
            Attention.decodeStep(
                out: attended.baseAddress!, scores: scores.baseAddress!, query: qkv.baseAddress!,
                keys: keys.baseAddress! + cache, values: values.baseAddress! + cache, length: position + 1,
                heads: attention.heads, keyValueHeads: attention.keyValueHeads, headSize: attention.headSize)
            attention.projection.forward(out: projected.baseAddress!, input: attended.baseAddress!, p: p, rows: 1)
            for i in 0..<c { x[i] += projected[i] }
            block.norm2.forward(
                out: h.baseAddress!, mean: mean.baseAddress!, rstd: rstd.baseAddress!, input: x.baseAddress!, p: p, rows: 1)
            block.mlp.forward(
                out: projected.baseAddress!, fcOut: hidden.baseAddress!, activated: activated.baseAddress!,
                input: h.baseAddress!, p: p, rows: 1)
            for i in 0..<c { x[i] += projected[i] }
        }
        model.finalNorm.forward(
            out: h.baseAddress!, mean: mean.baseAddress!, rstd: rstd.baseAddress!, input: x.baseAddress!, p: p, rows: 1)
        Matmul.forward(
            out: logits.baseAddress!, input: h.baseAddress!, weight: p + layout.head, bias: nil, rows: 1, inChannels: c,
            outChannels: config.vocabularySize, layout: .outputMajor)
        length += 1
    }
}
