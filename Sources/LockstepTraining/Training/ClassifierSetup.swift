import Foundation
import LockstepData
import LockstepTokenizer

extension RunSetup {
    /// The id that fills a classifier row after its tokens: `<|endoftext|>` when the tokenizer has it (GPT-2
    /// fine-tuning conventionally pads with it), else 0. The classifier reads each row's last real token, so
    /// the pad id never changes a prediction; it is saved as `pad_token_id` for `transformers`.
    public static func padID(_ tokenizer: BPETokenizer) -> Int32 {
        tokenizer.endOfTextID ?? 0
    }
}
