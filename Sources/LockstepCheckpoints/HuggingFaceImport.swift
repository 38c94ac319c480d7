import Foundation
import LockstepData
import LockstepFormats
import LockstepModel
import LockstepTokenizer
import LockstepConfig

/// Where an imported model's tokenizer comes from.
public enum ImportTokenizer: Equatable, Sendable {
    /// `vocab.json` + `merges.txt` of the Hugging Face directory being imported.
    case modelDirectory
    /// The plain 256-byte vocabulary (`data.tokenizer: bytes`).
    case bytes
    /// `vocab.json` + `merges.txt` of another directory.
    case directory(URL)
}

extension TrainingCheckpoint {
    /// Turns a Hugging Face GPT-2 directory (`GPT2LMHeadModel` or `GPT2ForSequenceClassification`:
    /// config.json, model.safetensors, and usually vocab.json + merges.txt) into a Lockstep checkpoint
    /// directory at `checkpoint`, to start training from (`model.init_from`) or to inspect and export:
    ///
    /// ```
    /// CHECKPOINT/  model.safetensors      the weights, as read
    ///              optimizer.safetensors  zero AdamW moments
    ///              state.json             step 0; a config whose model section matches config.json and whose
    ///                                     data.tokenizer is this directory; labelNames from id2label;
    ///                                     temperature from calibration_temperature; classification.echo
    ///                                     from echo_inputs
    ///              vocab.json, merges.txt copied (absent with `.bytes`)
    ///              checksums.json
    /// ```
    ///
    /// The checkpoint is built beside its final place and renamed in.
    /// - Parameter overwrite: replace an existing `checkpoint` directory (only once the new one is complete).
    /// - Returns: the state written.
    /// - Throws: `HuggingFaceError` naming the file that is missing or does not hold a GPT-2 model, the tensor
    ///   with a wrong shape, or the existing `checkpoint`; `TokenizerError` for unreadable tokenizer files.
    @discardableResult
    public static func importHuggingFace(
        directory: URL, tokenizer source: ImportTokenizer = .modelDirectory, to checkpoint: URL,
        overwrite: Bool = false
    ) throws -> CheckpointState {
        let fileManager = FileManager.default
        var isDirectory: ObjCBool = false
        guard fileManager.fileExists(atPath: directory.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw HuggingFaceError(file: directory.path, "does not exist or is not a directory")
        }
        let configURL = directory.appendingPathComponent(HuggingFaceModel.configFile)
        guard fileManager.fileExists(atPath: configURL.path) else {
            throw HuggingFaceError(file: configURL.path, "missing: a Hugging Face GPT-2 directory holds config.json and model.safetensors")
        }
        let weightsURL = directory.appendingPathComponent(HuggingFaceModel.weightsFile)
        guard fileManager.fileExists(atPath: weightsURL.path) else {
            let hint = fileManager.fileExists(atPath: directory.appendingPathComponent("pytorch_model.bin").path)
                ? " (pytorch_model.bin is not read: save with safe_serialization=True)" : ""
            throw HuggingFaceError(file: weightsURL.path, "missing\(hint)")
        }
        if fileManager.fileExists(atPath: checkpoint.path) && !overwrite {
            throw HuggingFaceError(file: checkpoint.path, "already exists (pass --force to replace it)")
        }

        let model = try HuggingFaceModel.loadConfig(directory: directory)
        var labelNames: [String]?
        if let labelCount = model.labelCount {
            let names = try HuggingFaceModel.loadLabelNames(directory: directory) ?? (0..<labelCount).map { "LABEL_\($0)" }
            if Set(names).count != names.count {
                throw HuggingFaceError(file: configURL.path, "id2label names are not distinct: \(names)")
            }
            labelNames = names
        }
        let temperature = try ModelExport.temperature(directory: directory)
        let echoInputs = try ModelExport.echoInputs(directory: directory)

        // The tokenizer: its files are loaded here to check them, and copied as they are.
        let tokenizer: BPETokenizer
        var tokenizerFiles: URL?
        switch source {
        case .bytes:
            tokenizer = .bytes()
        case .modelDirectory, .directory:
            let folder = if case .directory(let url) = source { url } else { directory }
            let missing = ["vocab.json", "merges.txt"].filter {
                !fileManager.fileExists(atPath: folder.appendingPathComponent($0).path)
            }
            if !missing.isEmpty {
                throw HuggingFaceError(
                    file: folder.path,
                    "has no \(missing.joined(separator: " or ")): name the tokenizer, 'bytes' or a directory with "
                        + "vocab.json and merges.txt (lockstep import --tokenizer)")
            }
            tokenizer = try BPETokenizer.load(directory: folder)
            tokenizerFiles = folder
        }
        if tokenizer.vocabularySize > model.vocabularySize {
            throw HuggingFaceError(
                file: (tokenizerFiles?.appendingPathComponent("vocab.json") ?? configURL).path,
                "the tokenizer has \(tokenizer.vocabularySize) entries, more than the model's vocab_size \(model.vocabularySize)")
        }

        let layout = ParameterLayout(config: model)
        let snapshot = WorkerState(count: layout.count)
        try HuggingFaceModel.loadParameters(from: SafeTensorsFile.read(weightsURL), into: snapshot.parameters, layout: layout)

        let final = checkpoint.standardizedFileURL
        let config = try importedRunConfig(
            model: model, labelNames: labelNames, echoInputs: echoInputs, source: directory,
            tokenizer: tokenizerFiles == nil ? "bytes" : final.path)
        let state = CheckpointState(
            formatVersion: CheckpointState.currentFormatVersion, step: 0, optimizerStep: 0,
            cursor: DataCursor(epoch: 0, position: 0), config: config, model: model,
            tokenizerVocabularySize: tokenizer.vocabularySize, worldSize: 1, labelNames: labelNames, skippedSteps: 0,
            lastLoss: nil, lastValidationLoss: nil, elapsedSeconds: 0, temperature: temperature)

        var files = files(snapshot: snapshot, state: state, layout: layout)
        if let tokenizerFiles {
            for name in ["vocab.json", "merges.txt"] {
                files.append((name, { url in try fileManager.copyItem(at: tokenizerFiles.appendingPathComponent(name), to: url) }))
            }
        }
        try DirectoryInstall.install(at: final, replacing: overwrite) { folder in
            try CheckpointDirectory.writeChecksummed(files: files, in: folder)
        }
        return state
    }

    /// The config recorded in an imported checkpoint: its model section matches the imported model and its
    /// tokenizer is the checkpoint's. It names no training data (an import has trained on none); a run starting
    /// from the checkpoint uses its own config.
    public static func importedRunConfig(
        model: GPTConfig, labelNames: [String]?, echoInputs: Bool = false, source: URL, tokenizer: String
    ) throws -> RunConfig {
        // JSON strings are valid YAML double-quoted scalars, so any path or label name reads back as written.
        var llamaKeys = ""
        if model.family == .llama {
            llamaKeys = ", kv_heads: \(model.keyValueHeads), intermediate_size: \(model.mlpWidth), "
                + "rope_theta: \(model.ropeTheta), tie_embeddings: \(model.tiesHead)"
        }
        var yaml = """
            model: {family: \(model.family.rawValue), vocab_size: \(model.vocabularySize), \
            context_length: \(model.contextLength), layers: \(model.layerCount), heads: \(model.headCount), \
            channels: \(model.channels)\(llamaKeys)}
            data:
              train: \(JSONText.quoted("(none: imported from \(source.path))"))
              tokenizer: \(JSONText.quoted(tokenizer))

            """
        if let labelNames {
            yaml += """
                task: classification
                classification:
                  labels: [\(labelNames.map(JSONText.quoted).joined(separator: ", "))]
                  echo: \(echoInputs)

                """
        }
        return try RunConfig(yaml: yaml, file: "<imported config>")
    }
}
