/// The shape of a GPT-2 model.
///
/// Dimension letters used throughout this module: B batch, T time (sequence length), C channels,
/// V vocabulary, L layers, NH heads, K labels.
public struct GPTConfig: Codable, Equatable, Sendable {
    /// V: token embedding rows and language-model logits.
    public var vocabularySize: Int
    /// Position embedding rows: the longest sequence the model can read (`n_positions`).
    public var contextLength: Int
    /// L: transformer blocks.
    public var layerCount: Int
    /// NH: attention heads; must divide `channels`.
    public var headCount: Int
    /// C: width of the residual stream.
    public var channels: Int
    public var layerNormEpsilon: Float = 1e-5
    /// K for a sequence classifier: adds `score.weight (K, C)`. Nil for a language model.
    public var labelCount: Int?
    /// The padding token of a classifier's inputs (`pad_token_id`), kept so a saved model says it.
    public var padTokenID: Int32?

    public init(
        vocabularySize: Int, contextLength: Int, layerCount: Int, headCount: Int, channels: Int,
        layerNormEpsilon: Float = 1e-5, labelCount: Int? = nil, padTokenID: Int32? = nil
    ) {
        self.vocabularySize = vocabularySize
        self.contextLength = contextLength
        self.layerCount = layerCount
        self.headCount = headCount
        self.channels = channels
        self.layerNormEpsilon = layerNormEpsilon
        self.labelCount = labelCount
        self.padTokenID = padTokenID
    }

    /// The smallest GPT-2 (124M parameters).
    public static let gpt2Small = GPTConfig(
        vocabularySize: 50257, contextLength: 1024, layerCount: 12, headCount: 12, channels: 768)

    /// Problems with these numbers, one line each naming the field; empty when the config is usable.
    /// The largest context length, head count, channel count and label count a config may give.
    public static let sizeLimit = 1 << 24

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
        if !(layerNormEpsilon > 0) { problems.append("layerNormEpsilon must be positive, got \(layerNormEpsilon)") }
        if let labelCount, labelCount < 1 { problems.append("labelCount must be at least 1, got \(labelCount)") }
        // Far beyond any model that fits in memory, and small enough that products of sizes cannot overflow.
        let limit = Self.sizeLimit
        for (name, value) in [("contextLength", contextLength), ("headCount", headCount), ("channels", channels),
                              ("labelCount", labelCount ?? 1)] where value > limit {
            problems.append("\(name) must be at most \(limit), got \(value)")
        }
        if layerCount > 10_000 { problems.append("layerCount must be at most 10000, got \(layerCount)") }
        if vocabularySize > Int(Int32.max) { problems.append("vocabularySize must be at most \(Int32.max), got \(vocabularySize)") }
        if let padTokenID, padTokenID < 0 || Int(padTokenID) >= vocabularySize {
            problems.append("padTokenID \(padTokenID) is outside the vocabulary 0..<\(vocabularySize)")
        }
        return problems
    }
}
