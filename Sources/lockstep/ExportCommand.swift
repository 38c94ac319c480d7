import ArgumentParser
import Foundation
import LockstepModel
import LockstepTraining

/// `lockstep export --format hf CHECKPOINT DIR`: a Hugging Face GPT-2 directory from a Lockstep checkpoint.
struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write a checkpoint as a Hugging Face GPT-2 directory (config.json, model.safetensors, tokenizer).")

    @Option(help: "Output format; only 'hf' (Hugging Face transformers) for now.")
    var format: String = "hf"

    @Argument(help: "A checkpoint directory, or a run's checkpoints/ folder for its newest valid checkpoint.")
    var checkpoint: String

    @Argument(help: "The directory to write.")
    var output: String

    func run() throws {
        guard format == "hf" else { throw ValidationError("--format must be 'hf', not '\(format)'") }
        var url = URL(fileURLWithPath: checkpoint)
        if !FileManager.default.fileExists(atPath: url.appendingPathComponent("state.json").path) {
            guard let newest = CheckpointDirectory(root: url).newestValid(rejected: { warn($0) }) else {
                throw ValidationError("\(checkpoint): neither a checkpoint nor a folder with a valid checkpoint")
            }
            url = newest
        }
        let state = try TrainingCheckpoint.readState(url)
        let model = GPT(config: state.model, batchSize: 1, sequenceLength: 1)
        let snapshot = TrainingSnapshot(count: model.layout.count)
        _ = try TrainingCheckpoint.load(url, expectedModel: state.model, into: snapshot)
        _ = model.parameters.update(fromContentsOf: snapshot.parameters)
        let directory = URL(fileURLWithPath: output)
        try HuggingFaceGPT2.save(model: model, directory: directory, extraConfig: nil)
        let tokenizer = try RunSetup.tokenizer(state.config)
        try tokenizer.save(directory: directory)
        print("exported step \(state.step) of \(url.path) to \(output) (GPT2LMHeadModel, vocab.json, merges.txt)")
    }
}
