import ArgumentParser
import Foundation
import LockstepModel
import LockstepTokenizer

/// `lockstep generate`: continue a prompt with a trained model, streaming the text as it comes.
struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate", abstract: "Generate text from a prompt with a trained model.")

    @Option(help: "A Hugging Face GPT-2 directory, e.g. a run's model/.")
    var model: String

    @Option(help: "'bytes' or a directory with vocab.json + merges.txt (default: the model directory's, else bytes).")
    var tokenizer: String?

    @Option(help: "The text to continue.")
    var prompt: String = ""

    @Option(help: "Tokens to generate at most.")
    var maxTokens: Int = 200

    @Option(help: "Sampling temperature (0: greedy).")
    var temperature: Double = 0.8

    @Option(help: "Sample among the k most likely tokens only (0: all).")
    var topK: Int = 0

    @Option(help: "Sample among the most likely tokens whose probability reaches p (1: all).")
    var topP: Double = 1

    @Option(help: "Random seed.")
    var seed: UInt64 = 0

    func validate() throws {
        guard maxTokens >= 0 else { throw ValidationError("--max-tokens must be at least 0, not \(maxTokens)") }
        guard temperature.isFinite && temperature >= 0 else {
            throw ValidationError("--temperature must be a finite number ≥ 0 (0: greedy), not \(temperature)")
        }
        guard topK >= 0 else { throw ValidationError("--top-k must be at least 0 (0: all tokens), not \(topK)") }
        guard topP > 0 && topP <= 1 else { throw ValidationError("--top-p must be in (0, 1] (1: all tokens), not \(topP)") }
    }

    func run() throws {
        restartForOpenBLAS(setting: openBLASCoreSetting())
        let directory = URL(fileURLWithPath: model)
        let config = try HuggingFaceModel.loadConfig(directory: directory)
        let gpt = GPT(config: config, batchSize: 1, sequenceLength: 1)
        try HuggingFaceModel.load(directory: directory, into: gpt)
        let tokenizerPath = tokenizer
            ?? (FileManager.default.fileExists(atPath: directory.appendingPathComponent("vocab.json").path) ? model : "bytes")
        let textTokenizer = try BPETokenizer.load(named: tokenizerPath)
        // Ids at or past the model's vocabulary would read past its embedding table.
        guard textTokenizer.vocabularySize <= config.vocabularySize else {
            throw ValidationError(
                "the tokenizer '\(tokenizerPath)' has \(textTokenizer.vocabularySize) entries, more than the model's "
                    + "vocabulary of \(config.vocabularySize) (\(directory.appendingPathComponent("config.json").path)); "
                    + "give the tokenizer the model was trained with")
        }

        var promptIDs = textTokenizer.encode(prompt)
        if promptIDs.isEmpty, let endOfText = textTokenizer.endOfTextID { promptIDs = [endOfText] }
        guard !promptIDs.isEmpty else { throw ValidationError("give a --prompt: the tokenizer has no <|endoftext|> to start from") }
        guard promptIDs.count < config.contextLength else {
            throw ValidationError("the prompt has \(promptIDs.count) tokens; the model's context is \(config.contextLength)")
        }
        let decoder = IncrementalDecoder(model: gpt)
        for id in promptIDs { decoder.append(id) }
        var sampler = Sampler(settings: SamplingSettings(temperature: temperature, topK: topK, topP: topP, seed: seed))
        FileHandle.standardOutput.write(Data(prompt.utf8))
        var generated: [Int32] = []
        var context = promptIDs
        var printed = 0
        for _ in 0..<maxTokens {
            let next = sampler.sample(UnsafeBufferPointer(decoder.logits))
            if next == textTokenizer.endOfTextID { break }
            generated.append(next)
            // Print what decodes completely; a multi-byte character may still be partial.
            let text = Array(textTokenizer.decode(generated).unicodeScalars)
            if text.last != "\u{FFFD}" {
                var piece = String.UnicodeScalarView()
                piece.append(contentsOf: text[printed...])
                FileHandle.standardOutput.write(Data(String(piece).utf8))
                printed = text.count
            }
            context.append(next)
            if decoder.isFull {
                // Past the model's context: start again from the most recent half (an O(T) refill every T/2 tokens).
                decoder.reset()
                context = Array(context.suffix(config.contextLength / 2))
                for id in context.dropLast() { decoder.append(id) }
            }
            decoder.append(next)
        }
        FileHandle.standardOutput.write(Data("\n".utf8))
    }
}
