import ArgumentParser
import Foundation
import LockstepData
import LockstepTokenizer
import LockstepTraining
import LockstepConfig

/// How `evaluate` and `predict` read a labeled (or unlabeled) file and which tokenizer they use with a
/// classifier. Every setting the command line leaves out comes from the checkpoint's `classification` section
/// when the model is a Lockstep checkpoint, else from the file's extension and the usual defaults.
struct ClassifierFileOptions: ParsableArguments {
    @Option(help: "Field holding the text: a 0-based column (TSV, CSV), a header name, or a JSONL key (default: the run's, else column 0 / 'text').")
    var textField: String?

    @Option(help: "Field holding the label, as --text-field (default: the run's, else column 1 / 'label').")
    var labelField: String?

    @Flag(inversion: .prefixedNo, help: "Whether the first TSV/CSV row names the columns (default: the run's, else on when a field is named).")
    var header: Bool?

    @Option(help: "tsv, csv or jsonl (default: the run's, else from the file's extension).")
    var fileFormat: String?

    @Option(help: "'bytes' or a directory with vocab.json + merges.txt (default: the model's own).")
    var tokenizer: String?

    func validate() throws {
        if let fileFormat, LabeledFileFormat(rawValue: fileFormat) == nil {
            throw ValidationError("--file-format must be tsv, csv or jsonl, not '\(fileFormat)'")
        }
    }

    /// The tokenizer named by `--tokenizer`, or nil for the model's own.
    func tokenizerOverride() throws -> BPETokenizer? {
        guard let tokenizer else { return nil }
        return tokenizer == "bytes" ? BPETokenizer.bytes() : try BPETokenizer.load(directory: URL(fileURLWithPath: tokenizer))
    }

    /// How to read `file`: the command line first, then the run's settings, then the defaults.
    /// A run's column indices are not carried over to a JSONL file, whose fields are keys.
    func fileOptions(for file: URL, settings: RunConfig.ClassificationSettings?) throws -> LabeledFileOptions {
        let format = try fileFormat.flatMap(LabeledFileFormat.init(rawValue:))
            ?? settings?.format ?? LabeledFileFormat(inferredFrom: file)
        func field(_ argument: String?, _ saved: FieldSelector?) -> FieldSelector? {
            if let argument { return Int(argument).map(FieldSelector.index) ?? .name(argument) }
            if format == .jsonl, case .index = saved { return nil }
            return saved
        }
        let named = [textField, labelField].contains { $0 != nil && Int($0!) == nil }
        return LabeledFileOptions(
            format: format, textField: field(textField, settings?.textField),
            labelField: field(labelField, settings?.labelField),
            hasHeader: header ?? (named ? true : settings?.header ?? false),
            invalidUTF8: settings?.invalidUTF8 ?? .error)
    }
}
