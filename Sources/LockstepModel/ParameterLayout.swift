import LockstepKernels

/// What a parameter tensor does, which decides its initialisation, its weight decay and its optimizer; never
/// its name.
public enum ParameterRole: Sendable, Equatable {
    /// The token table (and GPT-2's position table): AdamW, with weight decay.
    case embedding
    /// A linear weight inside a block that reads the residual stream or a hidden state (q/k/v, `c_attn`, `c_fc`,
    /// gate/up): a matrix for Muon.
    case matrix
    /// A linear weight inside a block that writes into the residual stream (`c_proj`, `o_proj`, `down_proj`):
    /// a matrix for Muon, initialised smaller (by 1/√(2L)) so that L blocks' sums start near the size of one.
    case residualProjection
    /// A linear layer's bias or LayerNorm's bias: starts at 0, no weight decay.
    case bias
    /// A norm's scale (LayerNorm, RMSNorm): starts at 1, no weight decay.
    case norm
    /// An untied language-model head or a classifier's `score`: AdamW, with weight decay.
    case head

    /// Linear weights inside the blocks: what Muon orthogonalises.
    public var isBlockMatrix: Bool { self == .matrix || self == .residualProjection }
    /// Whether AdamW decays it: matrices and tables, not biases and norms (the reference's parameter groups).
    public var decays: Bool { !(self == .bias || self == .norm) }
}

/// One named tensor inside the contiguous parameter buffer.
public struct ParameterTensor: Sendable, Equatable {
    /// Hugging Face name, e.g. `transformer.h.0.attn.c_attn.weight` or `model.layers.0.self_attn.q_proj.weight`.
    public var name: String
    /// First element in the buffer.
    public var offset: Int
    public var shape: [Int]
    public var role: ParameterRole

    public var count: Int { shape.reduce(1, *) }
    public var range: Range<Int> { offset..<(offset + count) }
}

/// Where every parameter lives in the one Float buffer that holds them all; gradients and optimizer state use
/// the same layout, so allreduce, optimizer and checkpoint I/O each work on whole buffers.
///
/// Order: the token table `(V, C)`, GPT-2's position table `(maxT, C)`, then block 0 … L-1 (each block's
/// tensors contiguous, so a block's gradients can be reduced as soon as its backward is done), the final norm,
/// an untied head `(V, C)`, and `score (K, C)` for a classifier. Names and storage follow Hugging Face so that
/// its checkpoints load as straight copies: GPT-2's linear weights in Conv1D layout `(in, out)`, Llama's in
/// `nn.Linear` layout `(out, in)` (`linearLayout`). Tensors one kernel reads together sit side by side: Llama's
/// q, k, v projections form one `(NH·hs + 2·KV·hs, C)` matrix, gate and up one `(2I, C)`.
public struct ParameterLayout: Sendable, Equatable {
    /// A norm's parameters, which also say which norm it is.
    public enum Norm: Sendable, Equatable {
        /// LayerNorm: weight and bias `(C)`.
        case layerNorm(weight: Int, bias: Int)
        /// RMSNorm: weight `(C)`.
        case rmsNorm(weight: Int)
    }

    /// Offsets of one block's tensors (element offsets into the buffer); biases are nil where the family has none.
    public struct Block: Sendable, Equatable {
        /// The norm before attention.
        public var norm1: Norm
        /// Queries, keys and values in one matrix: GPT-2's `c_attn (C, 3C)`, Llama's q, k, v `(·, C)` stacked.
        public var qkvWeight: Int, qkvBias: Int?
        /// The attention output projection `(C, C)`.
        public var attentionProjectionWeight: Int, attentionProjectionBias: Int?
        /// The norm before the MLP.
        public var norm2: Norm
        /// The MLP's input matrix: GPT-2's `c_fc (C, 4C)`, Llama's gate and up `(I, C)` stacked.
        public var fcWeight: Int, fcBias: Int?
        /// The MLP's output projection: GPT-2's `mlp.c_proj (4C, C)`, Llama's `down_proj (C, I)`.
        public var fcProjectionWeight: Int, fcProjectionBias: Int?
    }

    public let config: GPTConfig
    /// Every tensor in buffer order.
    public let tensors: [ParameterTensor]
    /// Total elements.
    public let count: Int
    /// The token table `(V, C)`.
    public let wte: Int
    /// GPT-2's position table `(maxT, C)`; nil for rotary positions.
    public let wpe: Int?
    public let blocks: [Block]
    /// The final norm, before the head.
    public let finalNorm: Norm
    /// The language-model head `(V, C)`: `wte` when tied (and for a classifier, which reads `score` instead).
    public let head: Int
    /// Offset of `score.weight`, nil for a language model.
    public let score: Int?
    /// How the blocks' linear weights are stored: `.inputMajor` (GPT-2's Conv1D) or `.outputMajor` (Llama).
    public let linearLayout: Matmul.WeightLayout
    private let blockRanges: [Range<Int>]
    private let index: [String: Int]

    public init(config: GPTConfig) {
        let C = config.channels, V = config.vocabularySize, maxT = config.contextLength
        var tensors: [ParameterTensor] = []
        var offset = 0
        func add(_ name: String, _ shape: [Int], _ role: ParameterRole) -> Int {
            let tensor = ParameterTensor(name: name, offset: offset, shape: shape, role: role)
            tensors.append(tensor)
            offset += tensor.count
            return tensor.offset
        }
        var blocks: [Block] = []
        var blockRanges: [Range<Int>] = []
        switch config.family {
        case .gpt2:
            linearLayout = .inputMajor
            wte = add("transformer.wte.weight", [V, C], .embedding)
            wpe = add("transformer.wpe.weight", [maxT, C], .embedding)
            for l in 0..<config.layerCount {
                let p = "transformer.h.\(l)."
                let start = offset
                blocks.append(Block(
                    norm1: .layerNorm(weight: add(p + "ln_1.weight", [C], .norm), bias: add(p + "ln_1.bias", [C], .bias)),
                    qkvWeight: add(p + "attn.c_attn.weight", [C, 3 * C], .matrix),
                    qkvBias: add(p + "attn.c_attn.bias", [3 * C], .bias),
                    attentionProjectionWeight: add(p + "attn.c_proj.weight", [C, C], .residualProjection),
                    attentionProjectionBias: add(p + "attn.c_proj.bias", [C], .bias),
                    norm2: .layerNorm(weight: add(p + "ln_2.weight", [C], .norm), bias: add(p + "ln_2.bias", [C], .bias)),
                    fcWeight: add(p + "mlp.c_fc.weight", [C, 4 * C], .matrix), fcBias: add(p + "mlp.c_fc.bias", [4 * C], .bias),
                    fcProjectionWeight: add(p + "mlp.c_proj.weight", [4 * C, C], .residualProjection),
                    fcProjectionBias: add(p + "mlp.c_proj.bias", [C], .bias)))
                blockRanges.append(start..<offset)
            }
            finalNorm = .layerNorm(
                weight: add("transformer.ln_f.weight", [C], .norm), bias: add("transformer.ln_f.bias", [C], .bias))
            head = wte
        case .llama:
            linearLayout = .outputMajor
            let hs = config.headSize, kvWidth = config.keyValueHeads * hs, I = config.mlpWidth
            wte = add("model.embed_tokens.weight", [V, C], .embedding)
            wpe = nil
            for l in 0..<config.layerCount {
                let p = "model.layers.\(l)."
                let start = offset
                let norm1 = add(p + "input_layernorm.weight", [C], .norm)
                let q = add(p + "self_attn.q_proj.weight", [C, C], .matrix)
                _ = add(p + "self_attn.k_proj.weight", [kvWidth, C], .matrix)
                _ = add(p + "self_attn.v_proj.weight", [kvWidth, C], .matrix)
                let o = add(p + "self_attn.o_proj.weight", [C, C], .residualProjection)
                let norm2 = add(p + "post_attention_layernorm.weight", [C], .norm)
                let gate = add(p + "mlp.gate_proj.weight", [I, C], .matrix)
                _ = add(p + "mlp.up_proj.weight", [I, C], .matrix)
                let down = add(p + "mlp.down_proj.weight", [C, I], .residualProjection)
                blocks.append(Block(
                    norm1: .rmsNorm(weight: norm1), qkvWeight: q, qkvBias: nil, attentionProjectionWeight: o,
                    attentionProjectionBias: nil, norm2: .rmsNorm(weight: norm2), fcWeight: gate, fcBias: nil,
                    fcProjectionWeight: down, fcProjectionBias: nil))
                blockRanges.append(start..<offset)
            }
            finalNorm = .rmsNorm(weight: add("model.norm.weight", [C], .norm))
            // A classifier (`LlamaForSequenceClassification`) has `score` and no language-model head.
            head = config.tiesHead || config.labelCount != nil ? wte : add("lm_head.weight", [V, C], .head)
        }
        score = config.labelCount.map { add("score.weight", [$0, C], .head) }
        self.config = config
        self.tensors = tensors
        self.count = offset
        self.blocks = blocks
        self.blockRanges = blockRanges
        var index: [String: Int] = [:]
        for (i, tensor) in tensors.enumerated() { index[tensor.name] = i }
        self.index = index
    }

    public func tensor(named name: String) -> ParameterTensor? {
        index[name].map { tensors[$0] }
    }

    /// The buffer range of the named tensor, nil when the layout has no such tensor.
    public func range(of name: String) -> Range<Int>? {
        tensor(named: name)?.range
    }

    /// The contiguous range holding all of block `i`'s tensors.
    public func blockRange(_ i: Int) -> Range<Int> {
        blockRanges[i]
    }

    /// The token table's range `(V, C)`.
    public var tokenTableRange: Range<Int> { wte..<(wte + config.vocabularySize * config.channels) }

    /// GPT-2's position table's range; nil for rotary positions.
    public var positionTableRange: Range<Int>? { wpe.map { $0..<($0 + config.contextLength * config.channels) } }

    /// Whether AdamW applies weight decay (`ParameterRole.decays`): to matrices and tables, not to biases and norms.
    public func decays(_ tensor: ParameterTensor) -> Bool {
        tensor.role.decays
    }

    /// A block matrix's shape as a linear map, `(outputs, inputs)` (PyTorch's `(out, in)`), whatever its storage:
    /// Muon's learning-rate scale depends on it.
    public func linearShape(_ tensor: ParameterTensor) -> (outputs: Int, inputs: Int)? {
        guard tensor.shape.count == 2 else { return nil }
        // Tables and heads are stored `(V or K, C)`, a map from C; block matrices as the family stores them.
        let inputMajor = tensor.role.isBlockMatrix && linearLayout == .inputMajor
        return inputMajor ? (tensor.shape[1], tensor.shape[0]) : (tensor.shape[0], tensor.shape[1])
    }
}
