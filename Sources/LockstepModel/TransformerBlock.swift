import LockstepKernels

// The parts a Transformer is built from, each with its forward and backward side by side. `GPT` runs the
// whole model from them over a batch; `IncrementalDecoder` runs the same parts one position at a time.
// Offsets are into the parameter buffer (`ParameterLayout`); `p` is the parameters, `g` the gradients.

/// LayerNorm or RMSNorm over `(rows, C)`, as the layout's `Norm` says.
struct NormPart {
    let parameters: ParameterLayout.Norm
    let channels: Int
    let eps: Float

    /// Overwrites `out (rows, C)` and the statistics `mean, rstd (rows)` (`mean` is left alone by RMSNorm).
    func forward(
        out: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>,
        input: UnsafePointer<Float>, p: UnsafePointer<Float>, rows: Int
    ) {
        switch parameters {
        case .layerNorm(let weight, let bias):
            LayerNorm.forward(
                out: out, mean: mean, rstd: rstd, input: input, weight: p + weight, bias: p + bias, rows: rows,
                channels: channels, eps: eps)
        case .rmsNorm(let weight):
            RMSNorm.forward(out: out, rstd: rstd, input: input, weight: p + weight, rows: rows, channels: channels, eps: eps)
        }
    }

    /// Accumulates into `dInput (rows, C)` and the norm's parameter gradients.
    func backward(
        dInput: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>, input: UnsafePointer<Float>,
        mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>, p: UnsafePointer<Float>, g: UnsafeMutablePointer<Float>,
        rows: Int
    ) {
        switch parameters {
        case .layerNorm(let weight, let bias):
            LayerNorm.backward(
                dInput: dInput, dWeight: g + weight, dBias: g + bias, dOut: dOut, input: input, weight: p + weight,
                mean: mean, rstd: rstd, rows: rows, channels: channels)
        case .rmsNorm(let weight):
            RMSNorm.backward(
                dInput: dInput, dWeight: g + weight, dOut: dOut, input: input, weight: p + weight, rstd: rstd, rows: rows,
                channels: channels)
        }
    }
}

/// A linear layer `(rows, inputs) → (rows, outputs)`, its weight stored as the family stores it, with or
/// without a bias.
struct LinearPart {
    let weight: Int
    let bias: Int?
    let inputs: Int
    let outputs: Int
    let layout: Matmul.WeightLayout

    func forward(out: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, p: UnsafePointer<Float>, rows: Int) {
        Matmul.forward(
            out: out, input: input, weight: p + weight, bias: bias.map { p + $0 }, rows: rows, inChannels: inputs,
            outChannels: outputs, layout: layout)
    }

    /// Accumulates into `dInput (rows, inputs)` and the weight's and bias's gradients.
    func backward(
        dInput: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>, input: UnsafePointer<Float>,
        p: UnsafePointer<Float>, g: UnsafeMutablePointer<Float>, rows: Int
    ) {
        Matmul.backward(
            dInput: dInput, dWeight: g + weight, dBias: bias.map { g + $0 }, dOut: dOut, input: input, weight: p + weight,
            rows: rows, inChannels: inputs, outChannels: outputs, layout: layout)
    }
}

/// Causal self-attention: one projection to queries, keys and values `(rows, (NH + 2·KV)·hs)`, rotary positions
/// on queries and keys (Llama), multi-head or grouped-query attention, and the output projection.
struct SelfAttentionPart {
    let qkv: LinearPart
    let projection: LinearPart
    let heads: Int
    let keyValueHeads: Int
    let headSize: Int
    /// Rotary position tables; nil when positions come from a learned table at the embedding (GPT-2).
    let rotary: RotaryTable?

    var channels: Int { heads &* headSize }
    /// Width of one row of `qkv`: queries, then keys, then values.
    var qkvWidth: Int { (heads &+ 2 &* keyValueHeads) &* headSize }
}

/// The MLP: GPT-2's `c_fc`, tanh GELU, `c_proj`; or Llama's gate and up (one `(2I, C)` matrix), SiLU gating, down.
struct FeedForwardPart {
    enum Activation { case gelu, siluGated }
    let fc: LinearPart
    let activation: Activation
    let projection: LinearPart
    /// I: the width the projection reads.
    let width: Int

    /// Width of `fc`'s output: I, or 2I for gate and up.
    var fcWidth: Int { fc.outputs }

    /// `fc (rows, fcWidth)` and `activated (rows, I)` are kept for backward; `out (rows, C)` is overwritten.
    func forward(
        out: UnsafeMutablePointer<Float>, fcOut: UnsafeMutablePointer<Float>, activated: UnsafeMutablePointer<Float>,
        input: UnsafePointer<Float>, p: UnsafePointer<Float>, rows: Int
    ) {
        fc.forward(out: fcOut, input: input, p: p, rows: rows)
        switch activation {
        case .gelu: GELU.forward(out: activated, input: fcOut, count: rows &* width)
        case .siluGated: SiLUGating.forward(out: activated, gateUp: fcOut, rows: rows, hidden: width)
        }
        projection.forward(out: out, input: activated, p: p, rows: rows)
    }

    /// Accumulates into `dInput (rows, C)`; `dActivated (rows, I)` and `dFc (rows, fcWidth)` are scratch.
    func backward(
        dInput: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>, input: UnsafePointer<Float>,
        fcOut: UnsafePointer<Float>, activated: UnsafePointer<Float>, dActivated: UnsafeMutablePointer<Float>,
        dFc: UnsafeMutablePointer<Float>, p: UnsafePointer<Float>, g: UnsafeMutablePointer<Float>, rows: Int,
        progress: (() -> Void)?
    ) {
        dActivated.update(repeating: 0, count: rows &* width)
        projection.backward(dInput: dActivated, dOut: dOut, input: activated, p: p, g: g, rows: rows)
        progress?()
        dFc.update(repeating: 0, count: rows &* fcWidth)
        switch activation {
        case .gelu: GELU.backward(dInput: dFc, input: fcOut, dOut: dActivated, count: rows &* width)
        case .siluGated: SiLUGating.backward(dGateUp: dFc, gateUp: fcOut, dOut: dActivated, rows: rows, hidden: width)
        }
        fc.backward(dInput: dInput, dOut: dFc, input: input, p: p, g: g, rows: rows)
        progress?()
    }
}

/// One pre-norm Transformer block, built once from parts for both families:
/// `x₂ = x + attention(norm1(x))`, `x₃ = x₂ + mlp(norm2(x₂))`.
struct TransformerBlock {
    let norm1: NormPart
    let attention: SelfAttentionPart
    let norm2: NormPart
    let mlp: FeedForwardPart

    init(config: GPTConfig, layout: ParameterLayout, block w: ParameterLayout.Block, rotary: RotaryTable?) {
        let C = config.channels, hs = config.headSize, I = config.mlpWidth
        let linear = layout.linearLayout
        norm1 = NormPart(parameters: w.norm1, channels: C, eps: config.layerNormEpsilon)
        norm2 = NormPart(parameters: w.norm2, channels: C, eps: config.layerNormEpsilon)
        let qkvWidth = (config.headCount + 2 * config.keyValueHeads) * hs
        attention = SelfAttentionPart(
            qkv: LinearPart(weight: w.qkvWeight, bias: w.qkvBias, inputs: C, outputs: qkvWidth, layout: linear),
            projection: LinearPart(
                weight: w.attentionProjectionWeight, bias: w.attentionProjectionBias, inputs: C, outputs: C, layout: linear),
            heads: config.headCount, keyValueHeads: config.keyValueHeads, headSize: hs, rotary: rotary)
        let gated = config.family == .llama
        mlp = FeedForwardPart(
            fc: LinearPart(weight: w.fcWeight, bias: w.fcBias, inputs: C, outputs: gated ? 2 * I : I, layout: linear),
            activation: gated ? .siluGated : .gelu,
            projection: LinearPart(weight: w.fcProjectionWeight, bias: w.fcProjectionBias, inputs: I, outputs: C, layout: linear),
            width: I)
    }

    /// Reads the block's input `residual (B, T, C)` and fills `a` (its output in `a.residual3`); `projection
    /// (B, T, C)` is scratch. `dropout`: this block's draw while training (`Dropout`), whose parts 0 and 1 mask
    /// the attention and MLP branches' outputs before their residual adds; nil for none.
    func forward(
        _ a: LayerActivations, residual: UnsafePointer<Float>, projection: UnsafeMutablePointer<Float>,
        p: UnsafePointer<Float>, batch B: Int, time T: Int, dropout: Dropout.Draw? = nil
    ) {
        let N = B &* T, C = attention.channels
        norm1.forward(out: a.norm1, mean: a.norm1Mean, rstd: a.norm1Rstd, input: residual, p: p, rows: N)
        attention.qkv.forward(out: a.qkv, input: a.norm1, p: p, rows: N)
        if let rotary = attention.rotary {
            Rotary.forward(
                a.qkv, rows: N, time: T, rowStride: attention.qkvWidth, heads: attention.heads &+ attention.keyValueHeads,
                table: rotary)
        }
        Attention.forward(
            out: a.attention, att: a.attentionProbabilities, qkv: a.qkv, batch: B, time: T, channels: C,
            heads: attention.heads, keyValueHeads: attention.keyValueHeads)
        attention.projection.forward(out: projection, input: a.attention, p: p, rows: N)
        if let dropout { Dropout.forward(projection, count: N &* C, draw: dropout.part(Self.attentionBranch)) }
        Residual.forward(out: a.residual2, a: residual, b: projection, count: N &* C)
        norm2.forward(out: a.norm2, mean: a.norm2Mean, rstd: a.norm2Rstd, input: a.residual2, p: p, rows: N)
        mlp.forward(out: projection, fcOut: a.fc, activated: a.fcActivated, input: a.norm2, p: p, rows: N)
        if let dropout { Dropout.forward(projection, count: N &* C, draw: dropout.part(Self.mlpBranch)) }
        Residual.forward(out: a.residual3, a: a.residual2, b: projection, count: N &* C)
    }

    /// From `dResidual` holding dL/d(block output) `(B, T, C)`, adds the block's parameter gradients into `g`
    /// and leaves dL/d(block input) in `dResidual`. A residual connection passes its output gradient unchanged
    /// to both inputs, so each branch reads `dResidual` as its output gradient and its norm's backward adds
    /// the branch's input gradient into it. With the forward's `dropout`, a branch reads the gradient through
    /// its mask instead (`s.dBranch`).
    func backward(
        _ a: LayerActivations, residual: UnsafePointer<Float>, scratch s: BackwardScratch, p: UnsafePointer<Float>,
        g: UnsafeMutablePointer<Float>, batch B: Int, time T: Int, dropout: Dropout.Draw? = nil,
        progress: (() -> Void)?
    ) {
        let N = B &* T, C = attention.channels
        // dL/d(branch output before its mask): `dResidual` itself without dropout.
        func branchGradient(_ branch: Int) -> UnsafeMutablePointer<Float> {
            guard let dropout else { return s.dResidual }
            s.dBranch.update(from: s.dResidual, count: N &* C)
            Dropout.backward(s.dBranch, count: N &* C, draw: dropout.part(branch))
            return s.dBranch
        }
        // MLP branch; dResidual is dL/d(residual3).
        s.dNormed.update(repeating: 0, count: N &* C)
        mlp.backward(
            dInput: s.dNormed, dOut: branchGradient(Self.mlpBranch), input: a.norm2, fcOut: a.fc, activated: a.fcActivated,
            dActivated: s.dActivated, dFc: s.dFc, p: p, g: g, rows: N, progress: progress)
        norm2.backward(
            dInput: s.dResidual, dOut: s.dNormed, input: a.residual2, mean: a.norm2Mean, rstd: a.norm2Rstd, p: p, g: g,
            rows: N)

        // Attention branch; dResidual is now dL/d(residual2).
        s.dAttention.update(repeating: 0, count: N &* C)
        attention.projection.backward(
            dInput: s.dAttention, dOut: branchGradient(Self.attentionBranch), input: a.attention, p: p, g: g, rows: N)
        progress?()
        s.dQKV.update(repeating: 0, count: N &* attention.qkvWidth)
        Attention.backward(
            dQKV: s.dQKV, scratch: s.attentionScratch, dOut: s.dAttention, qkv: a.qkv, att: a.attentionProbabilities,
            batch: B, time: T, channels: C, heads: attention.heads, keyValueHeads: attention.keyValueHeads)
        if let rotary = attention.rotary {
            Rotary.backward(
                s.dQKV, rows: N, time: T, rowStride: attention.qkvWidth, heads: attention.heads &+ attention.keyValueHeads,
                table: rotary)
        }
        progress?()
        s.dNormed.update(repeating: 0, count: N &* C)
        attention.qkv.backward(dInput: s.dNormed, dOut: s.dQKV, input: a.norm1, p: p, g: g, rows: N)
        norm1.backward(
            dInput: s.dResidual, dOut: s.dNormed, input: residual, mean: a.norm1Mean, rstd: a.norm1Rstd, p: p, g: g,
            rows: N)
    }
}

extension TransformerBlock {
    /// The parts of a block's `Dropout.Draw` that mask each branch.
    static let attentionBranch = 0
    static let mlpBranch = 1
}

/// One block's saved activations, views into the model's one activation buffer.
struct LayerActivations {
    /// `(B, T, C)` each, statistics `(B, T)`.
    var norm1, norm1Mean, norm1Rstd: UnsafeMutablePointer<Float>
    /// `(B, T, (NH + 2·KV)·hs)`, queries and keys after rotary positions.
    var qkv: UnsafeMutablePointer<Float>
    /// Softmax probabilities `(B, NH, T, T)`.
    var attentionProbabilities: UnsafeMutablePointer<Float>
    /// Heads' outputs `(B, T, C)`, the input of the output projection.
    var attention: UnsafeMutablePointer<Float>
    var residual2: UnsafeMutablePointer<Float>
    var norm2, norm2Mean, norm2Rstd: UnsafeMutablePointer<Float>
    /// `fc (B, T, fcWidth)` before the activation, `fcActivated (B, T, I)` after it.
    var fc, fcActivated: UnsafeMutablePointer<Float>
    /// The block's output `(B, T, C)`.
    var residual3: UnsafeMutablePointer<Float>
}

/// Backward's working buffers, shared by all blocks: each block's backward overwrites them.
struct BackwardScratch {
    /// dL/d(residual stream) `(B, T, C)`.
    var dResidual: UnsafeMutablePointer<Float>
    /// A norm's output gradient `(B, T, C)`.
    var dNormed: UnsafeMutablePointer<Float>
    var dAttention: UnsafeMutablePointer<Float>
    /// `(B, T, (NH + 2·KV)·hs)`.
    var dQKV: UnsafeMutablePointer<Float>
    /// `(B, T, fcWidth)` and `(B, T, I)`.
    var dFc, dActivated: UnsafeMutablePointer<Float>
    /// `(B, NH, T, T)`.
    var attentionScratch: UnsafeMutablePointer<Float>
    /// A branch's output gradient through its dropout mask `(B, T, C)`.
    var dBranch: UnsafeMutablePointer<Float>
}
