/// Which Transformer a `GPTConfig` describes. Both are decoder-only language models built from the same block
/// (`TransformerBlock`); the family picks its parts.
public enum ModelFamily: String, Codable, CaseIterable, Sendable {
    /// GPT-2 (2019): learned position table, LayerNorm with biases, multi-head attention with biases, 4× MLP
    /// with tanh GELU, head tied to the token table. Linear weights in Conv1D layout `(in, out)`.
    case gpt2
    /// Llama-style: rotary positions, RMSNorm, grouped-query attention, SiLU-gated MLP, no biases, an untied
    /// head by default. Linear weights in `nn.Linear` layout `(out, in)`.
    case llama
}

/// The shape of a decoder-only Transformer of either family (`family`).
///
/// Dimension letters used throughout this module: B batch, T time (sequence length), C channels,
/// V vocabulary, L layers, NH query heads, KV key/value heads, hs head size (C / NH), I MLP width, K labels.
public struct GPTConfig: Codable, Equatable, Sendable {
    public var family: ModelFamily = .gpt2
    /// V: token embedding rows and language-model logits.
    public var vocabularySize: Int
    /// The longest sequence the model can read (`n_positions`, `max_position_embeddings`): GPT-2's position
    /// table has this many rows; Llama's rotary tables are computed for as many positions.
    public var contextLength: Int
    /// L: transformer blocks.
    public var layerCount: Int
    /// NH: attention (query) heads; must divide `channels`.
    public var headCount: Int
    /// C: width of the residual stream.
    public var channels: Int
    /// LayerNorm's or RMSNorm's eps.
    public var layerNormEpsilon: Float = 1e-5
    /// What a Llama config gives for KV, I and the tied head, resolved at init so that two configs of one model
    /// compare equal however they were written; nil for GPT-2, whose values follow from its shape (so changing
    /// `channels` or `headCount` keeps them consistent). Read `keyValueHeads`, `mlpWidth`, `tiesHead`.
    private var keyValueHeadCount: Int?
    private var intermediateSize: Int?
    private var tieEmbeddings: Bool?
    /// Rotary embedding base (Llama only).
    public var ropeTheta: Double = 10_000
    /// K for a sequence classifier: adds `score.weight (K, C)`. Nil for a language model.
    public var labelCount: Int?
    /// The padding token of a classifier's inputs (`pad_token_id`), kept so a saved model says it.
    public var padTokenID: Int32?

    public init(
        family: ModelFamily = .gpt2, vocabularySize: Int, contextLength: Int, layerCount: Int, headCount: Int,
        channels: Int, layerNormEpsilon: Float = 1e-5, keyValueHeadCount: Int? = nil, intermediateSize: Int? = nil,
        ropeTheta: Double = 10_000, tieEmbeddings: Bool? = nil, labelCount: Int? = nil, padTokenID: Int32? = nil
    ) {
        self.family = family
        self.vocabularySize = vocabularySize
        self.contextLength = contextLength
        self.layerCount = layerCount
        self.headCount = headCount
        self.channels = channels
        self.layerNormEpsilon = layerNormEpsilon
        switch family {
        case .gpt2:
            // Kept only when they differ from GPT-2's, for `problems` to name.
            self.keyValueHeadCount = keyValueHeadCount == headCount ? nil : keyValueHeadCount
            self.intermediateSize = intermediateSize == 4 &* channels ? nil : intermediateSize
            self.tieEmbeddings = tieEmbeddings == true ? nil : tieEmbeddings
        case .llama:
            self.keyValueHeadCount = keyValueHeadCount ?? headCount
            self.intermediateSize = intermediateSize ?? Self.defaultIntermediateSize(channels: channels)
            self.tieEmbeddings = tieEmbeddings ?? false
        }
        self.ropeTheta = ropeTheta
        self.labelCount = labelCount
        self.padTokenID = padTokenID
    }

    /// The smallest GPT-2 (124M parameters).
    public static let gpt2Small = GPTConfig(
        vocabularySize: 50257, contextLength: 1024, layerCount: 12, headCount: 12, channels: 768)

    /// hs = C / NH.
    public var headSize: Int { headCount > 0 ? channels / headCount : 0 }
    /// KV: key/value heads (grouped-query attention); divides `headCount` (equal for multi-head attention).
    public var keyValueHeads: Int { keyValueHeadCount ?? headCount }
    /// I: the MLP's hidden width (4C for GPT-2).
    public var mlpWidth: Int { intermediateSize ?? 4 &* channels }
    /// Whether the language-model head is the token table (GPT-2 always; Llama usually not).
    public var tiesHead: Bool { tieEmbeddings ?? true }

    /// The token whose embedding row never gets a gradient, as `nn.Embedding(padding_idx:)` in Hugging Face's
    /// Llama (`pad_token_id`); GPT-2 has none.
    public var embeddingPaddingToken: Int32? { family == .llama ? padTokenID : nil }

    /// Llama's MLP width when none is given: 8C/3 (the same parameters as a 4C MLP without gating), rounded up
    /// to a multiple of 64 as Llama's own sizes are.
    public static func defaultIntermediateSize(channels: Int) -> Int {
        let width = (8 &* channels &+ 2) / 3
        return (width &+ 63) / 64 &* 64
    }

    /// The largest context length, head count, channel count and label count a config may give.
    public static let sizeLimit = 1 << 24

    /// Problems with these numbers, one line each naming the field; empty when the config is usable.
    public var problems: [String] {
        var problems: [String] = []
        if vocabularySize < 1 { problems.append("vocabularySize must be at least 1, got \(vocabularySize)") }
        if contextLength < 1 { problems.append("contextLength must be at least 1, got \(contextLength)") }
        if layerCount < 1 { problems.append("layerCount must be at least 1, got \(layerCount)") }
        if headCount < 1 { problems.append("headCount must be at least 1, got \(headCount)") }
        if channels < 1 { problems.append("channels must be at least 1, got \(channels)") }
        if headCount >= 1, channels % headCount != 0 {
            problems.append("channels (\(channels)) must be a multiple of headCount (\(headCount))")
        }
        if keyValueHeads < 1 {
            problems.append("keyValueHeads must be at least 1, got \(keyValueHeads)")
        } else if headCount >= 1, headCount % keyValueHeads != 0 {
            problems.append("headCount (\(headCount)) must be a multiple of keyValueHeads (\(keyValueHeads))")
        }
        if mlpWidth < 1 { problems.append("mlpWidth must be at least 1, got \(mlpWidth)") }
        if family == .gpt2 {
            if keyValueHeads != headCount {
                problems.append("keyValueHeads must equal headCount for GPT-2 (grouped-query attention is Llama's)")
            }
            if mlpWidth != 4 &* channels { problems.append("mlpWidth must be 4 × channels for GPT-2, got \(mlpWidth)") }
            if !tiesHead { problems.append("tiesHead must be true for GPT-2 (its head is the token table)") }
        } else {
            if headCount >= 1, channels % headCount == 0, (channels / headCount) % 2 != 0 {
                problems.append("the head size channels / headCount (\(channels / headCount)) must be even for rotary positions")
            }
            if !(ropeTheta > 1 && ropeTheta.isFinite) { problems.append("ropeTheta must be a finite number > 1, got \(ropeTheta)") }
        }
        if !(layerNormEpsilon > 0) { problems.append("layerNormEpsilon must be positive, got \(layerNormEpsilon)") }
        if let labelCount, labelCount < 1 { problems.append("labelCount must be at least 1, got \(labelCount)") }
        // Far beyond any model that fits in memory, and small enough that products of sizes cannot overflow.
        let limit = Self.sizeLimit
        for (name, value) in [("contextLength", contextLength), ("headCount", headCount), ("channels", channels),
                              ("labelCount", labelCount ?? 1), ("mlpWidth", mlpWidth), ("keyValueHeads", keyValueHeads)]
            where value > limit {
            problems.append("\(name) must be at most \(limit), got \(value)")
        }
        if layerCount > 10_000 { problems.append("layerCount must be at most 10000, got \(layerCount)") }
        if vocabularySize > Int(Int32.max) { problems.append("vocabularySize must be at most \(Int32.max), got \(vocabularySize)") }
        if let padTokenID, padTokenID < 0 || Int(padTokenID) >= vocabularySize {
            problems.append("padTokenID \(padTokenID) is outside the vocabulary 0..<\(vocabularySize)")
        }
        return problems
    }

    private enum CodingKeys: String, CodingKey {
        case family, vocabularySize, contextLength, layerCount, headCount, channels, layerNormEpsilon
        case keyValueHeadCount, intermediateSize, ropeTheta, tieEmbeddings, labelCount, padTokenID
    }

    /// Checkpoints written before the Llama family existed have no `family`, `ropeTheta` or the other new keys:
    /// they are GPT-2 models and decode as such.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            family: try c.decodeIfPresent(ModelFamily.self, forKey: .family) ?? .gpt2,
            vocabularySize: try c.decode(Int.self, forKey: .vocabularySize),
            contextLength: try c.decode(Int.self, forKey: .contextLength),
            layerCount: try c.decode(Int.self, forKey: .layerCount), headCount: try c.decode(Int.self, forKey: .headCount),
            channels: try c.decode(Int.self, forKey: .channels),
            layerNormEpsilon: try c.decodeIfPresent(Float.self, forKey: .layerNormEpsilon) ?? 1e-5,
            keyValueHeadCount: try c.decodeIfPresent(Int.self, forKey: .keyValueHeadCount),
            intermediateSize: try c.decodeIfPresent(Int.self, forKey: .intermediateSize),
            ropeTheta: try c.decodeIfPresent(Double.self, forKey: .ropeTheta) ?? 10_000,
            tieEmbeddings: try c.decodeIfPresent(Bool.self, forKey: .tieEmbeddings),
            labelCount: try c.decodeIfPresent(Int.self, forKey: .labelCount),
            padTokenID: try c.decodeIfPresent(Int32.self, forKey: .padTokenID))
    }
}
