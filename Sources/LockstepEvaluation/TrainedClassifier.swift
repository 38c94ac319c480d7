import Foundation
import LockstepData
import LockstepFormats
import LockstepModel
import LockstepTokenizer
import LockstepConfig
import LockstepCheckpoints

/// A fine-tuned GPT-2 sequence classifier loaded for inference: the weights, label names, softmax temperature
/// and tokenizer, from a Lockstep checkpoint or a Hugging Face directory.
///
/// Rows are built as training built them (`LabeledBatchStream.classifierText`, then `LabeledBatchStream.encode`):
/// the text (twice for a model fine-tuned with `classification.echo`), its first T tokens, then
/// `Tokenizer.padID` up to T; the head reads the last real token. A text that tokenizes to no tokens at all
/// becomes a single pad token (length 1), since the model needs one token to read; its prediction is the
/// model's answer for the pad token alone.
///
/// Not thread-safe: one caller at a time (the model's activation buffers are reused between calls).
public final class TrainedClassifier {
    /// Where the weights were read from (for a folder of checkpoints: the checkpoint chosen).
    public let location: ModelLocation
    public let config: GPTConfig
    /// K names in id order: the checkpoint's label names or config.json's `id2label`, else `LABEL_i`.
    public let labelNames: [String]
    /// The softmax temperature fitted on the dev set (checkpoint `temperature`, config.json
    /// `calibration_temperature`), 1 when the model has none.
    public let temperature: Double
    public let tokenizer: BPETokenizer
    /// How the training run read its labeled files; nil for a Hugging Face directory.
    public let fileSettings: RunConfig.ClassificationSettings?
    /// The training run's `sequence_length`; nil for a Hugging Face directory.
    public let trainingSequenceLength: Int?
    /// The id filling each row after its tokens (see `Tokenizer.padID`).
    public let padID: Int32
    /// Whether the model reads each text twice: the checkpoint's `classification.echo`, config.json's `echo_inputs`.
    public let echo: Bool

    /// The model, sized for the last (batch, T) asked for; replaced when a call needs another size.
    private var model: GPT

    /// K, the number of classes.
    public var labelCount: Int { labelNames.count }

    /// T when a caller gives none: the training run's sequence length, else the model's context length.
    public var defaultSequenceLength: Int { trainingSequenceLength ?? config.contextLength }

    /// Loads the classifier at `path` (see `ModelLocation.resolve`).
    /// - Parameter tokenizer: replaces the model's own (a checkpoint's `data.tokenizer`, a Hugging Face
    ///   directory's `vocab.json` + `merges.txt`).
    /// - Throws: `ClassifierLoadError` naming the path: a language model without a classification head, label
    ///   names that do not match K, a bad `calibration_temperature`, a tokenizer that cannot be found or whose
    ///   vocabulary exceeds the model's; and the loaders' own errors (`CheckpointError`, `HuggingFaceError`,
    ///   `SafeTensorsError`, `TokenizerError`), which name the file.
    public convenience init(contentsOf path: URL, tokenizer: BPETokenizer? = nil) throws {
        try self.init(location: ModelLocation.resolve(path), tokenizer: tokenizer)
    }

    /// Loads the classifier at an already resolved location; see `init(contentsOf:tokenizer:)`.
    public init(location: ModelLocation, tokenizer override: BPETokenizer? = nil) throws {
        self.location = location
        let directory = location.url
        let path = directory.path
        let notClassifier = "is a language model; predict/evaluate need a classifier fine-tuned with task: classification"
        var names: [String]?
        switch location {
        case .checkpoint:
            try CheckpointDirectory.verify(directory)
            let state = try TrainingCheckpoint.readState(directory)
            guard state.model.labelCount != nil else { throw ClassifierLoadError(path: path, notClassifier) }
            if let problem = state.model.problems.first {
                throw ClassifierLoadError(path: path + "/state.json", "model: \(problem)")
            }
            config = state.model
            names = state.labelNames
            temperature = state.temperature ?? 1
            fileSettings = state.config.classification
            trainingSequenceLength = state.config.training.sequenceLength
            echo = state.config.classification?.echo ?? false
            if let override {
                tokenizer = override
            } else {
                do {
                    tokenizer = try ModelExport.tokenizer(checkpoint: directory, state: state)
                } catch {
                    throw ClassifierLoadError(
                        path: path,
                        "cannot load the run's tokenizer '\(state.config.data.tokenizer)' (\(error)); a relative path "
                            + "is taken from the current directory: run from the training directory or give a tokenizer")
                }
            }
            model = GPT(config: config, batchSize: 1, sequenceLength: 1)
            try TrainingCheckpoint.readTensors(
                layout: model.layout, prefix: "", into: model.parameters,
                from: directory.appendingPathComponent("model.safetensors"))

        case .huggingFace:
            let loaded = try HuggingFaceModel.loadConfig(directory: directory)
            guard loaded.labelCount != nil else { throw ClassifierLoadError(path: path, notClassifier) }
            config = loaded
            names = try HuggingFaceModel.loadLabelNames(directory: directory)
            temperature = try ModelExport.temperature(directory: directory) ?? 1
            fileSettings = nil
            trainingSequenceLength = nil
            echo = try ModelExport.echoInputs(directory: directory)
            if let override {
                tokenizer = override
            } else {
                guard FileManager.default.fileExists(atPath: directory.appendingPathComponent("vocab.json").path) else {
                    throw ClassifierLoadError(
                        path: path, "has no vocab.json + merges.txt: give the tokenizer the model was trained with")
                }
                tokenizer = try BPETokenizer.load(directory: directory)
            }
            model = GPT(config: config, batchSize: 1, sequenceLength: 1)
            let weights = try SafeTensorsFile.read(directory.appendingPathComponent(HuggingFaceModel.weightsFile))
            guard weights.contains("score.weight") || weights.contains("transformer.score.weight") else {
                throw ClassifierLoadError(path: path, "has no score.weight: it " + notClassifier)
            }
            try HuggingFaceModel.loadParameters(from: weights, into: model.parameters, layout: model.layout)
        }

        let labelCount = config.labelCount!
        labelNames = names ?? (0..<labelCount).map { "LABEL_\($0)" }
        guard labelNames.count == labelCount else {
            throw ClassifierLoadError(
                path: path, "has \(labelNames.count) label names for a head of \(labelCount) classes")
        }
        guard tokenizer.vocabularySize <= config.vocabularySize else {
            throw ClassifierLoadError(
                path: path,
                "the tokenizer has \(tokenizer.vocabularySize) tokens, more than the model's vocabulary of "
                    + "\(config.vocabularySize): it is not the tokenizer the model was trained with")
        }
        padID = tokenizer.padID
    }

    /// config.json's optional `calibration_temperature`: 1 when absent.

    // MARK: - Inference

    /// Class logits of every text, in order, the last partial batch included.
    ///
    /// - Parameters:
    ///   - texts: N texts, tokenized with `tokenizer.encode` (each twice with `echo`); each row holds the first
    ///     T tokens, then pad.
    ///     A text with no tokens is read as one pad token (length 1).
    ///   - sequenceLength: T, at most the model's context length; nil: `defaultSequenceLength`.
    ///   - batchSize: rows per forward pass (memory grows with batch × T).
    /// - Returns: N·K logits, row-major (row i is texts[i]).
    /// - Throws: `ClassifierLoadError` for T outside 1...contextLength or a batch size below 1.
    public func logits(texts: [String], sequenceLength: Int? = nil, batchSize: Int = 8) throws -> [Float] {
        let T = sequenceLength ?? defaultSequenceLength
        guard (1...config.contextLength).contains(T) else {
            throw ClassifierLoadError(
                path: location.url.path, "sequence length \(T) is outside 1...\(config.contextLength), the model's context")
        }
        guard batchSize >= 1 else {
            throw ClassifierLoadError(path: location.url.path, "batch size must be at least 1, got \(batchSize)")
        }
        let N = texts.count, K = labelCount
        guard N > 0 else { return [] }
        let B = min(batchSize, N)
        let gpt = model(batch: B, time: T)
        var out = [Float](repeating: 0, count: N * K)
        var tokens = [Int32](repeating: padID, count: B * T)
        var lengths = [Int32](repeating: 1, count: B)
        let encode: (String) -> [Int32] = { [tokenizer, echo] in
            tokenizer.encode(LabeledBatchStream.classifierText($0, echo: echo))
        }
        let pad = padID
        for start in stride(from: 0, to: N, by: B) {
            let rows = min(B, N - start)
            tokens.withUnsafeMutableBufferPointer { tokenRows in
                for r in 0..<rows {
                    let length = LabeledBatchStream.encode(
                        texts[start + r], tokenize: encode, sequenceLength: T, padID: pad,
                        into: tokenRows.baseAddress! + r * T)
                    // An empty row is all pad already; reading its first token keeps GPT.classify's 1...T rule.
                    lengths[r] = max(length, 1)
                }
            }
            _ = gpt.classify(tokens: tokens, lengths: lengths, labels: nil, batch: rows)
            let batchLogits = gpt.classLogits
            for i in 0..<(rows * K) { out[start * K + i] = batchLogits[i] }
        }
        return out
    }

    /// softmax(logits / temperature) row by row; `calibrated` false uses temperature 1 (the raw model).
    /// - Parameter logits: N·K values, row-major, as `logits(texts:sequenceLength:batchSize:)` returns.
    /// - Returns: N·K probabilities, each row summing to 1.
    /// - Throws: `ClassificationMetricsError` for a count not a multiple of K or a non-finite logit.
    public func probabilities(logits: [Float], calibrated: Bool = true) throws -> [Double] {
        try TemperatureScaling.apply(
            logits: logits.map(Double.init), classCount: labelCount, temperature: calibrated ? temperature : 1)
    }

    /// The model sized for at least `batch` rows of `time` tokens, built (with the weights copied over) when
    /// the current one is smaller or has another T.
    private func model(batch: Int, time: Int) -> GPT {
        if model.batchSize < batch || model.sequenceLength != time {
            let resized = GPT(config: config, batchSize: batch, sequenceLength: time)
            _ = resized.parameters.update(fromContentsOf: model.parameters)
            model = resized
        }
        return model
    }
}
