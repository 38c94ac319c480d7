/// Text to token ids and back. Every tokenizer in Lockstep conforms, so the data pipeline and the
/// command-line tools do not care whether they hold a trained BPE or the plain byte vocabulary.
public protocol Tokenizer: Sendable {
    /// One more than the largest id this tokenizer can produce: the model's vocabulary size V.
    var vocabularySize: Int { get }
    /// The id of `<|endoftext|>`, placed between documents; nil when the vocabulary has none.
    var endOfTextID: Int32? { get }
    /// Ids for `text`. Special tokens written literally in `text` map to their ids.
    func encode(_ text: String) -> [Int32]
    /// The text for `ids`. Byte sequences that are not valid UTF-8 become U+FFFD (lossy, as Hugging Face does).
    func decode(_ ids: [Int32]) -> String
    /// `texts.map(encode)`, spread over the cores where the tokenizer can.
    func encodeBatch(_ texts: [String]) -> [[Int32]]
}

extension Tokenizer {
    public func encodeBatch(_ texts: [String]) -> [[Int32]] { texts.map(encode) }
}

extension Tokenizer {
    /// The id that fills a classifier row after its tokens: `<|endoftext|>` when the tokenizer has it (GPT-2
    /// fine-tuning conventionally pads with it), else 0. The classifier reads each row's last real token, so
    /// the pad id never changes a prediction; it is saved as `pad_token_id` for `transformers`.
    public var padID: Int32 {
        endOfTextID ?? 0
    }

}
