import ArgumentParser
import Foundation
import LockstepData
import LockstepKernels
import LockstepModel
import LockstepTraining
import LockstepCheckpoints
import LockstepEvaluation

/// `lockstep evaluate --model DIR --data GLOB|FILE`: for a language model, mean next-token loss and perplexity on
/// token shards; for a classifier (a model with a classification head), accuracy, F1, confusion matrix,
/// calibration and loss on a labeled TSV, CSV or JSONL file; `--model` given several times evaluates the
/// classifiers as one ensemble (`ClassifierEnsemble`: the mean of their probabilities). Prints JSON either way.
struct EvaluateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "evaluate",
        abstract: "Evaluate a model as JSON: loss and perplexity on token shards, or classifier metrics on a labeled file.")

    @Option(help: ArgumentHelp(
        "A Hugging Face GPT-2 directory (e.g. a run's model/); for a classifier also a Lockstep checkpoint or a run's checkpoints/.",
        discussion: "Repeat it to evaluate several classifiers as one ensemble: the mean of their class probabilities."))
    var model: [String]

    @Option(help: "Language model: glob of token shards, e.g. 'data/shakespeare/val_*.bin'. Classifier: a labeled TSV, CSV or JSONL file.")
    var data: String

    @Option(help: "Shard format: llmc or nanogpt.")
    var format: String = "llmc"

    @Option(help: "Tokens per window or row (default: a checkpoint's training sequence length, else the model's context length).")
    var sequenceLength: Int?

    @Option(help: "Windows or rows per forward pass.")
    var batchSize: Int = 8

    @Option(help: "Evaluate only the first N windows.")
    var maxWindows: Int?

    @Option(help: "OpenBLAS threads.")
    var threads: Int = 1

    @OptionGroup(title: "Classifier")
    var file: ClassifierFileOptions

    func validate() throws {
        guard batchSize >= 1 else { throw ValidationError("--batch-size must be at least 1, not \(batchSize)") }
        if let sequenceLength, sequenceLength < 1 {
            throw ValidationError("--sequence-length must be at least 1, not \(sequenceLength)")
        }
        if let maxWindows, maxWindows < 1 { throw ValidationError("--max-windows must be at least 1, not \(maxWindows)") }
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1, not \(threads)") }
    }

    func run() throws {
        restartForOpenBLAS(setting: openBLASCoreSetting())
        ComputeThreads.set(threads)
        let locations = try model.map { try ModelLocation.resolve(URL(fileURLWithPath: $0)) }
        let classifiers = try locations.map { try $0.hasClassifierHead() }
        if let languageModel = classifiers.firstIndex(of: false) {
            guard locations.count == 1 else {
                throw ValidationError(
                    "\(model[languageModel]) is a language model: only classifiers can be evaluated as an ensemble")
            }
            try evaluateLanguageModel()
        } else {
            try evaluateClassifiers(at: locations)
        }
    }

    /// Metrics of a classifier on a labeled file. `ece` and `loss` are the raw model's (temperature 1),
    /// `*_calibrated` use the model's stored temperature, and `*_fitted` a temperature fitted on this very file
    /// (an optimistic bound on what calibration can do, since it is fitted and measured on the same rows).
    /// With several classifiers every metric is that of the ensemble's probabilities (the mean of the members'
    /// calibrated ones, as `predict` gives), `temperature` is 1 and `members` lists each model with its
    /// temperature and sequence length.
    private func evaluateClassifiers(at locations: [ModelLocation]) throws {
        let tokenizer = try file.tokenizerOverride()
        let ensemble = try ClassifierEnsemble(
            members: locations.map { try TrainedClassifier(location: $0, tokenizer: tokenizer) })
        let first = ensemble.members[0]
        let dataURL = URL(fileURLWithPath: data)
        let options = try file.fileOptions(for: dataURL, settings: first.fileSettings)
        let dataset = try LabeledDataset.load(file: dataURL, options: options, labels: LabelMap(names: ensemble.labelNames))
        guard !dataset.examples.isEmpty else { throw DataError.invalidArgument("\(data): the file has no examples") }
        let memberLogits = try ensemble.memberLogits(
            texts: dataset.examples.map(\.text), sequenceLength: sequenceLength, batchSize: batchSize)
        let scores = try ensemble.scores(memberLogits: memberLogits)
        let labels = dataset.examples.map { Int($0.label) }
        let names = ensemble.labelNames
        let raw = try ClassificationReport.compute(logits: scores, labels: labels, labelNames: names)
        let calibrated = try ClassificationReport.compute(
            logits: scores, labels: labels, labelNames: names, temperature: ensemble.scoreTemperature)
        let fittedTemperature = try TemperatureScaling.fit(logits: scores, labels: labels, classCount: names.count)
        let fitted = try ClassificationReport.compute(
            logits: scores, labels: labels, labelNames: names, temperature: fittedTemperature)
        var result = raw.asJSON
        result["examples"] = raw.count
        result["loss"] = raw.negativeLogLikelihood
        result["temperature"] = ensemble.scoreTemperature
        result["ece_calibrated"] = calibrated.expectedCalibrationError
        result["loss_calibrated"] = calibrated.negativeLogLikelihood
        result["temperature_fitted"] = fittedTemperature
        result["ece_fitted"] = fitted.expectedCalibrationError
        result["loss_fitted"] = fitted.negativeLogLikelihood
        let lengths = ensemble.members.map { sequenceLength ?? $0.defaultSequenceLength }
        if ensemble.members.count == 1 {
            result["sequence_length"] = lengths[0]
            result["model"] = first.location.url.path
        } else {
            result["members"] = zip(ensemble.members, lengths).map { member, length -> [String: Any] in
                ["model": member.location.url.path, "temperature": member.temperature, "sequence_length": length]
            }
        }
        result["data"] = data
        let json = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys, .prettyPrinted])
        print(String(decoding: json, as: UTF8.self))
    }

    /// Mean next-token loss and perplexity of a language model on token shards.
    private func evaluateLanguageModel() throws {
        let directory = URL(fileURLWithPath: model[0])
        let modelConfig = try HuggingFaceModel.loadConfig(directory: directory)
        let time = sequenceLength ?? modelConfig.contextLength
        guard time <= modelConfig.contextLength else {
            throw ValidationError("--sequence-length \(time) exceeds the model's context length \(modelConfig.contextLength)")
        }
        guard let shardFormat = ShardFormat(rawValue: format) else {
            throw ValidationError("--format must be \(ShardFormat.allCases.map(\.rawValue).joined(separator: " or ")), not '\(format)'")
        }
        let gpt = GPT(config: modelConfig, batchSize: batchSize, sequenceLength: time)
        try HuggingFaceModel.load(directory: directory, into: gpt)
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
