/// One named tensor inside the contiguous parameter buffer.
public struct ParameterTensor: Sendable, Equatable {
    /// Hugging Face GPT-2 name, e.g. `transformer.h.0.attn.c_attn.weight`.
    public var name: String
    /// First element in the buffer.
    public var offset: Int
    public var shape: [Int]

    public var count: Int { shape.reduce(1, *) }
    public var range: Range<Int> { offset..<(offset + count) }
}

/// Where every parameter lives in the one Float buffer that holds them all; gradients and AdamW moments use
/// the same layout, so allreduce, optimizer and checkpoint I/O each work on whole buffers.
///
/// Order: `wte (V, C)`, `wpe (maxT, C)`, then block 0 … L-1 (each block's twelve tensors contiguous, so a
/// block's gradients can be reduced as soon as its backward is done), `ln_f`, and `score (K, C)` for a
/// classifier. Linear weights inside blocks are in GPT-2's Conv1D layout `(in, out)`, so Hugging Face
/// checkpoints load as straight copies.
public struct ParameterLayout: Sendable, Equatable {
    /// Offsets of one block's tensors (element offsets into the buffer).
    public struct Block: Sendable, Equatable {
        public var ln1Weight: Int, ln1Bias: Int
        /// `c_attn.weight (C, 3C)`, `c_attn.bias (3C)`.
        public var qkvWeight: Int, qkvBias: Int
        /// `attn.c_proj.weight (C, C)`, bias `(C)`.
        public var attentionProjectionWeight: Int, attentionProjectionBias: Int
        public var ln2Weight: Int, ln2Bias: Int
        /// `mlp.c_fc.weight (C, 4C)`, bias `(4C)`.
        public var fcWeight: Int, fcBias: Int
        /// `mlp.c_proj.weight (4C, C)`, bias `(C)`.
        public var fcProjectionWeight: Int, fcProjectionBias: Int
    }

    public let config: GPTConfig
    /// Every tensor in buffer order.
    public let tensors: [ParameterTensor]
    /// Total elements.
    public let count: Int
    public let wte: Int
    public let wpe: Int
    public let blocks: [Block]
    public let lnfWeight: Int
    public let lnfBias: Int
    /// Offset of `score.weight`, nil for a language model.
    public let score: Int?
    private let blockRanges: [Range<Int>]
    private let index: [String: Int]

    public init(config: GPTConfig) {
        let C = config.channels, V = config.vocabularySize, maxT = config.contextLength
        var tensors: [ParameterTensor] = []
        var offset = 0
        func add(_ name: String, _ shape: [Int]) -> Int {
            let tensor = ParameterTensor(name: name, offset: offset, shape: shape)
            tensors.append(tensor)
            offset += tensor.count
            return tensor.offset
        }
        wte = add("transformer.wte.weight", [V, C])
        wpe = add("transformer.wpe.weight", [maxT, C])
        var blocks: [Block] = []
        var blockRanges: [Range<Int>] = []
        for l in 0..<config.layerCount {
            let p = "transformer.h.\(l)."
            let start = offset
            blocks.append(Block(
                ln1Weight: add(p + "ln_1.weight", [C]), ln1Bias: add(p + "ln_1.bias", [C]),
                qkvWeight: add(p + "attn.c_attn.weight", [C, 3 * C]), qkvBias: add(p + "attn.c_attn.bias", [3 * C]),
                attentionProjectionWeight: add(p + "attn.c_proj.weight", [C, C]),
                attentionProjectionBias: add(p + "attn.c_proj.bias", [C]),
                ln2Weight: add(p + "ln_2.weight", [C]), ln2Bias: add(p + "ln_2.bias", [C]),
                fcWeight: add(p + "mlp.c_fc.weight", [C, 4 * C]), fcBias: add(p + "mlp.c_fc.bias", [4 * C]),
                fcProjectionWeight: add(p + "mlp.c_proj.weight", [4 * C, C]),
                fcProjectionBias: add(p + "mlp.c_proj.bias", [C])))
            blockRanges.append(start..<offset)
        }
        lnfWeight = add("transformer.ln_f.weight", [C])
        lnfBias = add("transformer.ln_f.bias", [C])
        score = config.labelCount.map { add("score.weight", [$0, C]) }
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

    /// Whether AdamW applies weight decay: to matrices (2 or more dimensions: embeddings, linear weights,
    /// the score head), not to biases or LayerNorm, as in the reference's parameter groups.
    public func decays(_ tensor: ParameterTensor) -> Bool {
        tensor.shape.count >= 2
    }
}
