import ArgumentParser
import Foundation
import LockstepData
import LockstepFormats
import LockstepKernels
import LockstepTraining
import LockstepCheckpoints
import LockstepEvaluation

/// `lockstep predict --model DIR --input FILE`: the label and calibrated class probabilities of every row of a
/// TSV, CSV or JSONL file, one record per row in input order. Labels in the file are optional; when a row has
/// one it is echoed as `true_label`. `--model` given several times predicts with the classifiers as one ensemble
/// (`ClassifierEnsemble`: the mean of their calibrated probabilities).
struct PredictCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "predict", abstract: "Label every text of a TSV, CSV or JSONL file with a fine-tuned classifier.")

    enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
        case jsonl, csv
    }

    @Option(help: ArgumentHelp(
        "A classifier: a Lockstep checkpoint, a run's checkpoints/, or a Hugging Face GPT-2 directory.",
        discussion: "Repeat it to predict with several classifiers as one ensemble: the mean of their class probabilities."))
    var model: [String]

    @Option(help: "The TSV, CSV or JSONL file of texts (a label field is optional).")
    var input: String

    @Option(help: "Where to write the predictions (default: standard output).")
    var output: String?

    @Option(help: "jsonl or csv (default: from --output's extension, else jsonl).")
    var outputFormat: OutputFormat?

    @Option(help: "Tokens per row (default: a checkpoint's training sequence length, else the model's context length).")
    var sequenceLength: Int?

    @Option(help: "Rows per forward pass.")
    var batchSize: Int = 8

    @Option(help: "OpenBLAS threads.")
    var threads: Int = 1

    @OptionGroup(title: "Input file")
    var file: ClassifierFileOptions

    func validate() throws {
        guard batchSize >= 1 else { throw ValidationError("--batch-size must be at least 1, not \(batchSize)") }
        if let sequenceLength, sequenceLength < 1 {
            throw ValidationError("--sequence-length must be at least 1, not \(sequenceLength)")
        }
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1, not \(threads)") }
        _ = try resolvedFormat()
    }

    func resolvedFormat() throws -> OutputFormat {
        if let outputFormat { return outputFormat }
        guard let output else { return .jsonl }
        switch URL(fileURLWithPath: output).pathExtension.lowercased() {
        case "csv": return .csv
        case "jsonl", "json": return .jsonl
        case let other:
            throw ValidationError("cannot tell the output format from the extension '\(other)' of \(output): give --output-format jsonl or csv")
        }
    }

    func run() throws {
        restartForOpenBLAS(setting: openBLASCoreSetting())
        ComputeThreads.set(threads)
        let tokenizer = try file.tokenizerOverride()
        let ensemble = try ClassifierEnsemble(
            members: model.map { try TrainedClassifier(contentsOf: URL(fileURLWithPath: $0), tokenizer: tokenizer) })
        let inputURL = URL(fileURLWithPath: input)
        let options = try file.fileOptions(for: inputURL, settings: ensemble.members[0].fileSettings)
        let records = try LabeledDataset.loadTexts(file: inputURL, options: options)
        let logits = try ensemble.memberLogits(
            texts: records.map(\.text), sequenceLength: sequenceLength, batchSize: batchSize)
        let probabilities = try ensemble.probabilities(memberLogits: logits)
        let names = ensemble.labelNames
        let text: String
        switch try resolvedFormat() {
        case .jsonl: text = Self.jsonLines(records: records, probabilities: probabilities, names: names)
        case .csv: text = Self.csv(records: records, probabilities: probabilities, names: names)
        }
        if let output {
            try AtomicFile.write(Data(text.utf8), to: URL(fileURLWithPath: output))
        } else {
            FileHandle.standardOutput.write(Data(text.utf8))
        }
    }

    /// The predicted class of row `i`: the most probable, the lowest id on ties.
    static func predicted(_ probabilities: [Double], row i: Int, classes: Int) -> Int {
        var best = 0
        for k in 1..<classes where probabilities[i * classes + k] > probabilities[i * classes + best] { best = k }
        return best
    }

    /// `{"index":0,"label":"pos","probabilities":{"neg":0.1,...},"true_label":"neg"}` per line, keys in this
    /// order and probabilities in label-id order.
    static func jsonLines(records: [TextRecord], probabilities: [Double], names: [String]) -> String {
        let K = names.count
        var out = ""
        for (i, record) in records.enumerated() {
            let label = names[predicted(probabilities, row: i, classes: K)]
            let byName = (0..<K).map { JSONText.quoted(names[$0]) + ":" + "\(probabilities[i * K + $0])" }
            out += "{\"index\":\(i),\"label\":\(JSONText.quoted(label)),\"probabilities\":{"
                + byName.joined(separator: ",") + "}"
            if let truth = record.label { out += ",\"true_label\":" + JSONText.quoted(truth) }
            out += "}\n"
        }
        return out
    }

    /// A header `index,label,p_<name>...[,true_label]` and one row per record (RFC 4180 quoting); the
    /// `true_label` column is there when any row has a label, empty for rows without one.
    static func csv(records: [TextRecord], probabilities: [Double], names: [String]) -> String {
        let K = names.count
        let hasTruth = records.contains { $0.label != nil }
        var header = ["index", "label"] + names.map { "p_" + $0 }
        if hasTruth { header.append("true_label") }
        var out = header.map(csvField).joined(separator: ",") + "\n"
        for (i, record) in records.enumerated() {
            var fields = ["\(i)", csvField(names[predicted(probabilities, row: i, classes: K)])]
            fields += (0..<K).map { "\(probabilities[i * K + $0])" }
            if hasTruth { fields.append(csvField(record.label ?? "")) }
            out += fields.joined(separator: ",") + "\n"
        }
        return out
    }

    /// `field` quoted when it holds a comma, quote or line break, with quotes doubled (RFC 4180).
    static func csvField(_ field: String) -> String {
        guard field.unicodeScalars.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else {
            return field
        }
        return "\"" + field.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}
