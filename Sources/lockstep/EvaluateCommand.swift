import ArgumentParser
import Foundation
import LockstepData
import LockstepKernels
import LockstepModel
import LockstepTraining

/// `lockstep evaluate --model DIR --data GLOB`: mean next-token loss and perplexity as JSON.
struct EvaluateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "evaluate", abstract: "Mean loss and perplexity of a model on token shards, as JSON.")

    @Option(help: "A Hugging Face GPT-2 directory (config.json + model.safetensors), e.g. a run's model/.")
    var model: String

    @Option(help: "Glob of token shards, e.g. 'data/shakespeare/val_*.bin'.")
    var data: String

    @Option(help: "Shard format: llmc or nanogpt.")
    var format: String = "llmc"

    @Option(help: "Tokens per window (default: the model's context length).")
    var sequenceLength: Int?

    @Option(help: "Windows per forward pass.")
    var batchSize: Int = 8

    @Option(help: "Evaluate only the first N windows.")
    var maxWindows: Int?

    @Option(help: "OpenBLAS threads.")
    var threads: Int = 1

    func run() throws {
        BLASThreads.set(threads)
        let directory = URL(fileURLWithPath: model)
        let modelConfig = try HuggingFaceGPT2.loadConfig(directory: directory)
        let time = sequenceLength ?? modelConfig.contextLength
        guard time <= modelConfig.contextLength else {
            throw ValidationError("--sequence-length \(time) exceeds the model's context length \(modelConfig.contextLength)")
        }
        guard let shardFormat: ShardFormat = format == "llmc" ? .llmc : format == "nanogpt" ? .nanogpt : nil else {
            throw ValidationError("--format must be llmc or nanogpt, not '\(format)'")
        }
        let gpt = GPT(config: modelConfig, batchSize: batchSize, sequenceLength: time)
        try HuggingFaceGPT2.load(directory: directory, into: gpt)
        let dataset = try TokenWindowDataset(
            files: try TokenWindowDataset.files(matching: data), format: shardFormat, sequenceLength: time,
            vocabularySize: modelConfig.vocabularySize)
        let sums = ValidationLoss.evaluate(
            model: gpt, dataset: dataset, batch: batchSize, sequenceLength: time, maxWindows: maxWindows)
        let result: [String: Any] = [
            "loss": sums.meanLoss, "perplexity": exp(sums.meanLoss), "windows": Int(sums.windows),
            "tokens": Int(sums.windows) * time,
        ]
        let json = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys])
        print(String(decoding: json, as: UTF8.self))
    }
}
