import Foundation
import LockstepFormats
import LockstepModel
import LockstepTokenizer
import LockstepConfig

/// Writing a model as a Hugging Face GPT-2 directory that `transformers` loads with `from_pretrained`:
///
/// ```
/// DIR/  config.json        GPT2LMHeadModel, or GPT2ForSequenceClassification with id2label/label2id,
///                          pad_token_id, (when fitted) calibration_temperature and (with
///                          classification.echo) echo_inputs
///       model.safetensors  F32 tensors under Hugging Face GPT-2 names
///       vocab.json, merges.txt
/// ```
///
/// Used by `lockstep export` and at the end of training. The directory is built beside its final place and
/// renamed in, so a failed export never leaves a half-written directory and an old one is replaced only by a
/// complete new one.
public enum ModelExport {
    /// The config.json key holding a classifier's softmax temperature (fitted on the dev set): divide the
    /// logits by it before the softmax. `transformers` keeps unknown config keys through load and save.
    public static let temperatureKey = "calibration_temperature"

    /// `calibration_temperature` from `directory`'s config.json; nil when absent.
    /// - Throws: `HuggingFaceError` naming config.json when the value is not a positive number.
    public static func temperature(directory: URL) throws -> Double? {
        let url = directory.appendingPathComponent(HuggingFaceModel.configFile)
        let object = (try? JSONSerialization.jsonObject(with: Data(contentsOf: url))) as? [String: Any]
        guard let value = object?[temperatureKey], !(value is NSNull) else { return nil }
        guard let number = value as? NSNumber, number.doubleValue > 0, number.doubleValue.isFinite else {
            throw HuggingFaceError(file: url.path, "key '\(temperatureKey)' is \(value), expected a positive number")
        }
        return number.doubleValue
    }

    /// The config.json key set (true) on a classifier fine-tuned with `classification.echo`: it reads each text
    /// twice (`LabeledBatchStream.classifierText`). `transformers` keeps it but does not act on it; a caller
    /// of the exported model writes each text twice itself.
    public static let echoInputsKey = "echo_inputs"

    /// `echo_inputs` from `directory`'s config.json; false when absent.
    /// - Throws: `HuggingFaceError` naming config.json when the value is not true or false.
    public static func echoInputs(directory: URL) throws -> Bool {
        let url = directory.appendingPathComponent(HuggingFaceModel.configFile)
        let object = (try? JSONSerialization.jsonObject(with: Data(contentsOf: url))) as? [String: Any]
        guard let value = object?[echoInputsKey], !(value is NSNull) else { return false }
        guard let flag = value as? Bool else {
            throw HuggingFaceError(file: url.path, "key '\(echoInputsKey)' is \(value), expected true or false")
        }
        return flag
    }

    /// Writes config.json, model.safetensors, vocab.json and merges.txt into `directory`, replacing it if it
    /// exists.
    /// - Parameters:
    ///   - parameters: all of the model's parameters, in `ParameterLayout(config: model)` order.
    ///   - labelNames: a classifier's label names in id order (nil: `LABEL_0`, `LABEL_1`, …); nil for a
    ///     language model.
    ///   - temperature: a classifier's calibration temperature, written as `calibration_temperature`.
    ///   - echoInputs: a classifier that reads each text twice (`classification.echo`), written as `echo_inputs`.
    /// - Throws: `HuggingFaceError` naming the path that cannot be written or the argument that does not fit
    ///   the model; `TokenizerError`, `SafeTensorsError` or `FileWriteError` from the writers.
    public static func writeHuggingFace(
        parameters: UnsafeBufferPointer<Float>, model: GPTConfig, labelNames: [String]?, temperature: Double?,
        echoInputs: Bool = false, tokenizer: BPETokenizer, to directory: URL
    ) throws {
        let layout = ParameterLayout(config: model)
        guard parameters.count == layout.count else {
            throw HuggingFaceError(
                file: directory.path, "\(parameters.count) parameters given for a model of \(layout.count)")
        }
        if let labelNames, labelNames.count != model.labelCount {
            throw HuggingFaceError(
                file: directory.path,
                "\(labelNames.count) label names given for a model with \(model.labelCount.map(String.init) ?? "no") labels")
        }
        if tokenizer.vocabularySize > model.vocabularySize {
            throw HuggingFaceError(
                file: directory.path,
                "the tokenizer has \(tokenizer.vocabularySize) entries, more than the model's vocabulary (\(model.vocabularySize))")
        }
        var extra: [String: Any] = [:]
        if let labelCount = model.labelCount {
            let names = labelNames ?? (0..<labelCount).map { "LABEL_\($0)" }
            extra["id2label"] = Dictionary(uniqueKeysWithValues: names.enumerated().map { ("\($0.offset)", $0.element) })
        }
        if let temperature { extra[temperatureKey] = temperature }
        if echoInputs { extra[echoInputsKey] = true }
        let configText = try HuggingFaceModel.configJSON(model, extra: extra)

        try DirectoryInstall.install(at: directory, replacing: true) { folder in
            var writer = SafeTensorsWriter()
            writer.metadata = ["format": "pt"]
            try HuggingFaceModel.addTensors(from: parameters, layout: layout, to: &writer)
            try writer.write(to: folder.appendingPathComponent(HuggingFaceModel.weightsFile))
            try AtomicFile.write(configText, to: folder.appendingPathComponent(HuggingFaceModel.configFile))
            try tokenizer.save(directory: folder)
        }
    }

    /// Exports a Lockstep checkpoint: its parameters, label names and temperature, and its tokenizer (see
    /// `tokenizer(checkpoint:state:)`). Verifies the checkpoint's checksums first.
    /// - Returns: the checkpoint's state.
    @discardableResult
    public static func writeHuggingFace(checkpoint: URL, to directory: URL) throws -> CheckpointState {
        if checkpoint.standardizedFileURL.resolvingSymlinksInPath().path == directory.standardizedFileURL.resolvingSymlinksInPath().path {
            throw HuggingFaceError(file: directory.path, "is the checkpoint being exported; name another directory")
        }
        try CheckpointDirectory.verify(checkpoint)
        let state = try TrainingCheckpoint.readState(checkpoint)
        let layout = ParameterLayout(config: state.model)
        // Only the weights: the optimizer moments would double the memory for nothing.
        let parameters = UnsafeMutableBufferPointer<Float>.allocate(capacity: layout.count)
        defer { parameters.deallocate() }
        parameters.initialize(repeating: 0)
        try TrainingCheckpoint.readTensors(
            layout: layout, prefix: "", into: parameters, from: checkpoint.appendingPathComponent("model.safetensors"))
        try writeHuggingFace(
            parameters: UnsafeBufferPointer(parameters), model: state.model, labelNames: state.labelNames,
            temperature: state.temperature, echoInputs: state.config.classification?.echo ?? false,
            tokenizer: try tokenizer(checkpoint: checkpoint, state: state),
            to: directory)
        return state
    }

    /// A checkpoint's tokenizer: `vocab.json` + `merges.txt` inside the checkpoint when it holds them (as an
    /// imported one does, so it still works after being moved), else the run's `data.tokenizer`.
    public static func tokenizer(checkpoint: URL, state: CheckpointState) throws -> BPETokenizer {
        let fileManager = FileManager.default
        if fileManager.fileExists(atPath: checkpoint.appendingPathComponent("vocab.json").path),
            fileManager.fileExists(atPath: checkpoint.appendingPathComponent("merges.txt").path)
        {
            return try BPETokenizer.load(directory: checkpoint)
        }
        return try tokenizer(for: state.config)
    }

    /// A run's `data.tokenizer`: `bytes`, a directory holding `vocab.json` + `merges.txt` (a prepared corpus, an
    /// exported model), or a Lockstep checkpoint directory, whose run's tokenizer is used.
    public static func tokenizer(for config: RunConfig) throws -> BPETokenizer {
        let path = config.data.tokenizer
        if path == "bytes" { return BPETokenizer.bytes() }
        let url = URL(fileURLWithPath: path)
        if let checkpoint = ModelLocation.checkpoint(url) {
            return try tokenizer(checkpoint: checkpoint, state: TrainingCheckpoint.readState(checkpoint))
        }
        return try BPETokenizer.load(directory: url)
    }
}

/// Builds a directory beside its final place and renames it in: readers see the old directory or the complete
/// new one, never a part.
enum DirectoryInstall {
    /// Creates `final`'s parent folders, calls `build` with an empty temporary sibling folder, fsyncs what it
    /// wrote, and renames it to `final`. An existing `final` directory is replaced only when `replacing`, and
    /// only after `build` succeeded; the temporary folder is removed on failure.
    /// - Throws: `HuggingFaceError` naming the path when `final` or a parent is a file, when `final` exists
    ///   and `replacing` is false, or when a folder cannot be created or renamed; `build`'s own errors.
    static func install(at final: URL, replacing: Bool, build: (URL) throws -> Void) throws {
        let fileManager = FileManager.default
        let final = final.standardizedFileURL
        let parent = final.deletingLastPathComponent()
        var isDirectory: ObjCBool = false
        if fileManager.fileExists(atPath: final.path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else {
                throw HuggingFaceError(file: final.path, "exists and is a file, not a directory")
            }
            guard replacing else {
                throw HuggingFaceError(file: final.path, "already exists")
            }
        }
        // A plain file on the way makes createDirectory fail with a vague message; name it instead.
        var ancestor = parent
        while !fileManager.fileExists(atPath: ancestor.path, isDirectory: &isDirectory), ancestor.path != "/" {
            ancestor = ancestor.deletingLastPathComponent()
        }
        if !isDirectory.boolValue {
            throw HuggingFaceError(file: final.path, "cannot be created: \(ancestor.path) is a file, not a directory")
        }
        do {
            try fileManager.createDirectory(at: parent, withIntermediateDirectories: true)
        } catch {
            throw HuggingFaceError(file: final.path, "cannot create the folder \(parent.path) (\(error.localizedDescription))")
        }

        let temporary = parent.appendingPathComponent(".\(final.lastPathComponent).tmp-\(getpid())")
        let old = parent.appendingPathComponent(".\(final.lastPathComponent).old-\(getpid())")
        try? fileManager.removeItem(at: temporary)
        try? fileManager.removeItem(at: old)
        do {
            try fileManager.createDirectory(at: temporary, withIntermediateDirectories: false)
        } catch {
            throw HuggingFaceError(file: temporary.path, "cannot be created (\(error.localizedDescription))")
        }
        do {
            try build(temporary)
            for name in try fileManager.contentsOfDirectory(atPath: temporary.path) {
                try AtomicFile.sync(temporary.appendingPathComponent(name))
            }
            try AtomicFile.sync(temporary)
            let replacingOld = fileManager.fileExists(atPath: final.path)
            if replacingOld { try AtomicFile.rename(final, to: old) }
            do {
                try AtomicFile.rename(temporary, to: final)
            } catch {
                if replacingOld { try? AtomicFile.rename(old, to: final) }
                throw error
            }
            if replacingOld { try? fileManager.removeItem(at: old) }
        } catch {
            try? fileManager.removeItem(at: temporary)
            throw error
        }
    }
}
