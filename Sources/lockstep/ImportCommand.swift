import ArgumentParser
import Foundation
import LockstepTraining
import LockstepCheckpoints

/// `lockstep import --format hf DIR CHECKPOINT`: a Lockstep checkpoint from a Hugging Face GPT-2 directory.
struct ImportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Turn a Hugging Face GPT-2 directory into a Lockstep checkpoint (step 0) to train from.",
        discussion: """
            DIR holds config.json, model.safetensors and vocab.json + merges.txt (GPT2LMHeadModel or \
            GPT2ForSequenceClassification). Start a run from the result with `model.init_from: CHECKPOINT`.
            """)

    @Option(help: "Input format; only 'hf' (Hugging Face transformers) for now.")
    var format: String = "hf"

    @Option(help: "Tokenizer when DIR has no vocab.json + merges.txt: 'bytes' or a directory holding them.")
    var tokenizer: String?

    @Flag(help: "Replace CHECKPOINT if it exists.")
    var force = false

    @Argument(help: "The Hugging Face model directory.")
    var directory: String

    @Argument(help: "The checkpoint directory to write.")
    var checkpoint: String

    func validate() throws {
        guard format == "hf" else { throw ValidationError("--format must be 'hf', not '\(format)'") }
    }

    func run() throws {
        let source: ImportTokenizer =
            switch tokenizer {
            case nil: .modelDirectory
            case "bytes": .bytes
            case let path?: .directory(URL(fileURLWithPath: path))
            }
        let state = try TrainingCheckpoint.importHuggingFace(
            directory: URL(fileURLWithPath: directory), tokenizer: source, to: URL(fileURLWithPath: checkpoint),
            overwrite: force)
        let kind = state.labelNames.map { "classifier, labels \($0.joined(separator: ", "))" } ?? "language model"
        print("imported \(directory) to \(checkpoint) (\(kind); \(state.model.layerCount) layers, "
            + "\(state.model.channels) channels, vocabulary \(state.model.vocabularySize))")
    }
}
