import ArgumentParser
import Foundation
import LockstepTraining
import LockstepCheckpoints

/// `lockstep export --format hf CHECKPOINT DIR`: a Hugging Face GPT-2 directory from a Lockstep checkpoint.
struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write a checkpoint as a Hugging Face GPT-2 directory (config.json, model.safetensors, tokenizer).")

    @Option(help: "Output format; only 'hf' (Hugging Face transformers) for now.")
    var format: String = "hf"

    @Argument(help: "A checkpoint directory, or a run's checkpoints/ folder for its newest valid checkpoint.")
    var checkpoint: String

    @Argument(help: "The directory to write (replaced once the new one is complete).")
    var output: String

    func validate() throws {
        guard format == "hf" else { throw ValidationError("--format must be 'hf', not '\(format)'") }
    }

    func run() throws {
        var url = URL(fileURLWithPath: checkpoint)
        if !FileManager.default.fileExists(atPath: url.appendingPathComponent("state.json").path) {
            guard let newest = CheckpointDirectory(root: url).newestValid(rejected: { warn($0) }) else {
                throw ValidationError("\(checkpoint): neither a checkpoint nor a folder with a valid checkpoint")
            }
            url = newest
        }
        let state = try ModelExport.writeHuggingFace(checkpoint: url, to: URL(fileURLWithPath: output))
        let kind = state.model.labelCount.map { "GPT2ForSequenceClassification, \($0) labels" } ?? "GPT2LMHeadModel"
        print("exported step \(state.step) of \(url.path) to \(output) (\(kind); vocab.json, merges.txt)")
    }
}
