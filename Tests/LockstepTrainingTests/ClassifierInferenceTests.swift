import Foundation
import LockstepData
import LockstepKernels
import LockstepModel
import LockstepTestSupport
import LockstepTokenizer
import Testing
@testable import LockstepTraining
import LockstepConfig
import LockstepCheckpoints
import LockstepEvaluation

/// A tiny random 3-class classifier (labels neg, neu, pos; byte tokenizer) saved as a Hugging Face directory
/// and as a Lockstep checkpoint, read back with `TrainedClassifier` and driven through `lockstep evaluate` and
/// `lockstep predict`. The command-line tests skip when the `lockstep` executable is not built beside them.
@Suite struct ClassifierInferenceTests {
    static let names = ["neg", "neu", "pos"]
    static let config = GPTConfig(
        vocabularySize: 257, contextLength: 16, layerCount: 2, headCount: 2, channels: 16, labelCount: 3)
    /// Seven texts: an empty one (read as one pad token), one longer than T = 16 bytes (truncated), a
    /// multi-byte one.
    static let texts = [
        "good", "", "a rather long text that is cut at sixteen bytes", "meh", "bad movie", "naïve 🙂", "ok",
    ]
    static let binary = MPIRun.productsDirectory.appendingPathComponent("lockstep")

    /// Writes the classifier (random weights from `seed`) and the byte tokenizer into `directory`.
    @discardableResult
    static func saveClassifier(
        in directory: URL, temperature: Double? = nil, seed: UInt64 = 7, echo: Bool = false,
        labels: [String] = names
    ) throws -> GPT {
        let model = GPT(config: config, batchSize: 1, sequenceLength: config.contextLength)
        model.initializeRandomly(seed: seed)
        var extra: [String: Any] = [
            "id2label": Dictionary(uniqueKeysWithValues: labels.enumerated().map { ("\($0.offset)", $0.element) })
        ]
        if let temperature { extra["calibration_temperature"] = temperature }
        if echo { extra["echo_inputs"] = true }
        try HuggingFaceModel.save(model: model, directory: directory, extraConfig: extra)
        try BPETokenizer.bytes().save(directory: directory)
        return model
    }

    /// Logits straight from `GPT.classify` on rows built by hand: each text's first T byte ids, then pad 256
    /// (`<|endoftext|>`), length at least 1; `batch` rows per call, the last call with the rest.
    static func referenceLogits(directory: URL, texts: [String], time: Int, batch: Int) throws -> [Float] {
        let model = GPT(config: config, batchSize: batch, sequenceLength: time)
        try HuggingFaceModel.load(directory: directory, into: model)
        var logits: [Float] = []
        for start in stride(from: 0, to: texts.count, by: batch) {
            let rows = Array(texts[start..<min(start + batch, texts.count)])
            var tokens = [Int32](repeating: 256, count: rows.count * time)
            var lengths = [Int32](repeating: 1, count: rows.count)
            for (b, text) in rows.enumerated() {
                let ids = Array(text.utf8.prefix(time)).map(Int32.init)
                for (t, id) in ids.enumerated() { tokens[b * time + t] = id }
                lengths[b] = Int32(max(ids.count, 1))
            }
            _ = model.classify(tokens: tokens, lengths: lengths, labels: nil, batch: rows.count)
            logits += Array(model.classLogits)
        }
        return logits
    }

    static func argmax(_ logits: [Float], row: Int) -> Int {
        var best = 0
        for k in 1..<3 where logits[row * 3 + k] > logits[row * 3 + best] { best = k }
        return best
    }

    // MARK: - Library

    @Test func logitsEqualClassifyBatchByBatch() throws {
        let folder = try TemporaryDirectory()
        defer { withExtendedLifetime(folder) {} }  // removed at the end of the test, not after its last use
        try Self.saveClassifier(in: folder.url)
        let classifier = try TrainedClassifier(contentsOf: folder.url)
        #expect(classifier.location == .huggingFace(folder.url))
        #expect(classifier.labelNames == Self.names)
        #expect(classifier.temperature == 1)
        #expect(classifier.padID == 256)
        #expect(classifier.fileSettings == nil)
        #expect(classifier.defaultSequenceLength == 16)

        // Exactly GPT.classify's logits for the same rows in the same batches, the last partial batch included
        // (7 = 2+2+2+1 = 5+2 = 7).
        var byBatch: [Int: [Float]] = [:]
        for batch in [2, 5, 7] {
            let reference = try Self.referenceLogits(directory: folder.url, texts: Self.texts, time: 16, batch: batch)
            let logits = try classifier.logits(texts: Self.texts, sequenceLength: 16, batchSize: batch)
            #expect(logits.count == 7 * 3)
            #expect(logits == reference, "batch \(batch)")
            byBatch[batch] = logits
        }
        // Across batch sizes only to rounding: sgemm over B·T rows may sum in another order when B changes.
        for batch in [2, 5] {
            for (a, b) in zip(byBatch[batch]!, byBatch[7]!) { #expect(abs(a - b) <= 1e-5 * max(1, abs(b))) }
        }
        // Default T is the context length; a shorter T is the same as building shorter rows.
        #expect(try classifier.logits(texts: Self.texts, batchSize: 3)
            == Self.referenceLogits(directory: folder.url, texts: Self.texts, time: 16, batch: 3))
        #expect(try classifier.logits(texts: Self.texts, sequenceLength: 4, batchSize: 3)
            == Self.referenceLogits(directory: folder.url, texts: Self.texts, time: 4, batch: 3))
        #expect(try classifier.logits(texts: [], batchSize: 3).isEmpty)

        #expect(throws: ClassifierLoadError.self) { try classifier.logits(texts: ["x"], sequenceLength: 17) }
    }

    @Test func calibratedProbabilitiesDivideLogitsByTheTemperature() throws {
        let folder = try TemporaryDirectory()
        defer { withExtendedLifetime(folder) {} }  // removed at the end of the test, not after its last use
        try Self.saveClassifier(in: folder.url, temperature: 2.5)
        let classifier = try TrainedClassifier(contentsOf: folder.url)
        #expect(classifier.temperature == 2.5)
        let logits = try classifier.logits(texts: Self.texts, batchSize: 4)
        // Scale the logits up so that the temperature visibly changes the probabilities.
        let scaled = logits.map { $0 * 50 }
        func softmax(_ row: Int, _ temperature: Double) -> [Double] {
            let z = (0..<3).map { Double(scaled[row * 3 + $0]) / temperature }
            let top = z.max()!
            let e = z.map { exp($0 - top) }
            let sum = e.reduce(0, +)
            return e.map { $0 / sum }
        }
        let calibrated = try classifier.probabilities(logits: scaled, calibrated: true)
        let raw = try classifier.probabilities(logits: scaled, calibrated: false)
        for row in 0..<Self.texts.count {
            let expectedCalibrated = softmax(row, 2.5)
            let expectedRaw = softmax(row, 1)
            for k in 0..<3 {
                #expect(abs(calibrated[row * 3 + k] - expectedCalibrated[k]) <= 1e-12)
                #expect(abs(raw[row * 3 + k] - expectedRaw[k]) <= 1e-12)
            }
        }
        #expect(calibrated != raw)
    }

    @Test func readsACheckpointFolderWithItsRunSettings() throws {
        let folder = try TemporaryDirectory()
        defer { withExtendedLifetime(folder) {} }  // removed at the end of the test, not after its last use
        let huggingFace = folder.url.appendingPathComponent("hf")
        let model = try Self.saveClassifier(in: huggingFace)
        let checkpoints = try Self.saveCheckpoint(of: model, in: folder.url)

        let classifier = try TrainedClassifier(contentsOf: checkpoints)
        #expect(classifier.location == .checkpoint(checkpoints.appendingPathComponent("step-0000005")))
        #expect(classifier.labelNames == Self.names)
        #expect(classifier.temperature == 1.75)
        #expect(classifier.trainingSequenceLength == 12)
        #expect(classifier.defaultSequenceLength == 12)
        #expect(classifier.fileSettings?.textField == .name("sentence"))
        let reference = try Self.referenceLogits(directory: huggingFace, texts: Self.texts, time: 12, batch: 3)
        #expect(try classifier.logits(texts: Self.texts, batchSize: 3) == reference)
        #expect(try ModelLocation.resolve(checkpoints).hasClassifierHead())
    }

    /// A classifier run's checkpoint of `model` at step 5 under `root/checkpoints`: config with T = 12 and a
    /// header TSV whose fields are `sentence` and `label`, temperature 1.75, `classification.echo` as given.
    static func saveCheckpoint(of model: GPT, in root: URL, echo: Bool = false) throws -> URL {
        let yaml = """
            task: classification
            model:
              context_length: 16
              layers: 2
              heads: 2
              channels: 16
            data:
              train: train.tsv
              tokenizer: bytes
            training:
              sequence_length: 12
              micro_batch_size: 2
            classification:
              format: tsv
              text_field: sentence
              label_field: label
              labels: [neg, neu, pos]
              echo: \(echo)
            """
        let runConfig = try RunConfig(yaml: yaml)
        let snapshot = WorkerState(count: model.layout.count)
        _ = snapshot.parameters.update(fromContentsOf: model.parameters)
        let state = CheckpointState(
            formatVersion: CheckpointState.currentFormatVersion, step: 5, optimizerStep: 5,
            cursor: DataCursor(epoch: 0, position: 0), config: runConfig, model: config,
            tokenizerVocabularySize: 257, worldSize: 1, labelNames: names, skippedSteps: 0, lastLoss: nil,
            lastValidationLoss: nil, elapsedSeconds: 0, temperature: 1.75)
        let checkpoints = root.appendingPathComponent("checkpoints")
        _ = try TrainingCheckpoint.save(
            snapshot: snapshot, state: state, layout: model.layout, to: CheckpointDirectory(root: checkpoints))
        return checkpoints
    }

    @Test func languageModelsAndMissingFilesAreClearErrors() throws {
        let folder = try TemporaryDirectory()
        defer { withExtendedLifetime(folder) {} }  // removed at the end of the test, not after its last use
        let languageModel = GPT(
            config: GPTConfig(vocabularySize: 257, contextLength: 8, layerCount: 1, headCount: 1, channels: 8),
            batchSize: 1, sequenceLength: 8)
        languageModel.initializeRandomly(seed: 1)
        try HuggingFaceModel.save(model: languageModel, directory: folder.url)
        try BPETokenizer.bytes().save(directory: folder.url)
        #expect(try !ModelLocation.resolve(folder.url).hasClassifierHead())
        let error = #expect(throws: ClassifierLoadError.self) { try TrainedClassifier(contentsOf: folder.url) }
        #expect(error?.description == folder.url.path
            + ": is a language model; predict/evaluate need a classifier fine-tuned with task: classification")

        let empty = folder.url.appendingPathComponent("empty")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        let notModel = #expect(throws: ClassifierLoadError.self) { try TrainedClassifier(contentsOf: empty) }
        #expect(notModel?.description.hasPrefix(empty.path + ": not a model") == true)

        let classifierFolder = folder.url.appendingPathComponent("classifier")
        try Self.saveClassifier(in: classifierFolder)
        try FileManager.default.removeItem(at: classifierFolder.appendingPathComponent("vocab.json"))
        let noTokenizer = #expect(throws: ClassifierLoadError.self) { try TrainedClassifier(contentsOf: classifierFolder) }
        #expect(noTokenizer?.description.contains(classifierFolder.path + ": has no vocab.json") == true)
        // An explicit tokenizer stands in for the missing files.
        #expect(try TrainedClassifier(contentsOf: classifierFolder, tokenizer: .bytes()).labelNames == Self.names)
    }

    // MARK: - Command line

    struct Run {
        var status: Int32
        var output: String
        var error: String
    }

    /// Runs the `lockstep` command with the test environment (`MPIRun.environment`: this process's OpenBLAS
    /// kernels), less the variables named in `unsetting`.
    func lockstep(_ arguments: [String], unsetting: [String] = []) throws -> Run {
        let process = Process()
        process.executableURL = Self.binary
        process.arguments = arguments
        process.environment = MPIRun.environment.filter { !unsetting.contains($0.key) }
        let stdout = Pipe(), stderr = Pipe()
        process.standardOutput = stdout
        process.standardError = stderr
        try process.run()
        // Read both pipes before waiting, so a full pipe cannot block the child.
        let box = DataBox(Data())
        let reading = DispatchGroup()
        DispatchQueue.global().async(group: reading) { box.data = stderr.fileHandleForReading.readDataToEndOfFile() }
        let output = stdout.fileHandleForReading.readDataToEndOfFile()
        reading.wait()
        process.waitUntilExit()
        return Run(
            status: process.terminationStatus, output: String(decoding: output, as: UTF8.self),
            error: String(decoding: box.data, as: UTF8.self))
    }

    final class DataBox: @unchecked Sendable {
        var data: Data
        init(_ data: Data) { self.data = data }
    }

    /// Left to choose, a command takes OpenBLAS's kernels for this CPU: where OpenBLAS took the CPU for a
    /// Prescott it says so and starts itself again with `OPENBLAS_CORETYPE` set, then does its work (here, the
    /// clear error for a missing model); elsewhere it says nothing of it.
    @Test func commandsChooseOpenBLASKernelsForThisCPU() throws {
        try requireBinary()
        let folder = try TemporaryDirectory()
        let missing = folder.url.appendingPathComponent("no-model").path
        let run = try lockstep(
            ["evaluate", "--model", missing, "--data", missing], unsetting: [OpenBLASEnvironment.coreTypeVariable])
        #expect(run.status != 0 && run.error.contains(missing), "\(run.error)")
        // This process's own choice is OpenBLAS's unless the variable was set for the whole test run.
        let native = ProcessInfo.processInfo.environment[OpenBLASEnvironment.coreTypeVariable] == nil
        let expected = OpenBLASEnvironment.coreTypeForUnknownCPU(
            detectedCore: OpenBLASEnvironment.detectedCore, cpuFlags: OpenBLASEnvironment.cpuFlags())
        let said = run.error.components(separatedBy: "restarting with OPENBLAS_CORETYPE=").dropFirst().first?
            .prefix { !$0.isNewline }
        if native { #expect(said.map(String.init) == expected, "\(run.error)") }
    }

    /// `swift test` builds every product, so a missing `lockstep` binary is a failure, not a reason to skip.
    func requireBinary() throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.binary.path), "\(Self.binary.path) is not built")
    }

    /// Labels for the seven texts, a mix the random model gets partly right.
    static let labels = ["pos", "neu", "neg", "neu", "neg", "pos", "pos"]

    /// `text<TAB>label` rows (TSV quoting: no tabs or quotes in these texts).
    static func tsv(header: String? = nil, labels: [String] = labels) -> String {
        var rows = header.map { [$0] } ?? []
        for (text, label) in zip(texts, labels) { rows.append("\(text)\t\(label)") }
        return rows.joined(separator: "\n") + "\n"
    }

    @Test func evaluatePrintsMetricsThatMatchAHandCount() throws {
        try requireBinary()
        let folder = try TemporaryDirectory()
        defer { withExtendedLifetime(folder) {} }  // removed at the end of the test, not after its last use
        try Self.saveClassifier(in: folder.url.appendingPathComponent("model"), temperature: 2)
        let data = folder.url.appendingPathComponent("test.tsv")
        try Data(Self.tsv().utf8).write(to: data)

        let classifier = try TrainedClassifier(contentsOf: folder.url.appendingPathComponent("model"))
        let logits = try classifier.logits(texts: Self.texts, batchSize: 3)
        var correct = 0
        var confusion = [[Int]](repeating: [0, 0, 0], count: 3)
        for (row, label) in Self.labels.enumerated() {
            let truth = Self.names.firstIndex(of: label)!
            let predicted = Self.argmax(logits, row: row)
            if predicted == truth { correct += 1 }
            confusion[truth][predicted] += 1
        }

        let run = try lockstep([
            "evaluate", "--model", folder.url.appendingPathComponent("model").path, "--data", data.path,
            "--batch-size", "3",
        ])
        #expect(run.status == 0, "\(run.error)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(run.output.utf8)) as? [String: Any])
        #expect(json["accuracy"] as? Double == Double(correct) / 7)
        #expect(json["examples"] as? Int == 7)
        #expect(json["labels"] as? [String] == Self.names)
        #expect(json["confusion_matrix"] as? [[Int]] == confusion)
        #expect(json["temperature"] as? Double == 2)
        #expect(json["bins"] as? Int == 15)
        for key in ["macro_f1", "loss", "ece", "ece_calibrated", "loss_calibrated", "ece_fitted", "temperature_fitted"] {
            #expect(json[key] is Double, "missing \(key)")
        }
        let perClass = try #require(json["per_class"] as? [String: [String: Any]])
        #expect(Set(perClass.keys) == Set(Self.names))
        #expect(perClass["pos"]?["support"] as? Int == 3)
    }

    @Test func evaluateReadsACheckpointWithTheRunsFileSettings() throws {
        try requireBinary()
        let folder = try TemporaryDirectory()
        defer { withExtendedLifetime(folder) {} }  // removed at the end of the test, not after its last use
        let model = try Self.saveClassifier(in: folder.url.appendingPathComponent("hf"))
        let checkpoints = try Self.saveCheckpoint(of: model, in: folder.url)
        // Fields by name from the run's settings: label first, so defaults (column 0 = text) would misread it.
        let data = folder.url.appendingPathComponent("dev.tsv")
        var text = "label\tsentence\n"
        for (row, label) in Self.labels.enumerated() { text += "\(label)\t\(Self.texts[row])\n" }
        try Data(text.utf8).write(to: data)

        let run = try lockstep(["evaluate", "--model", checkpoints.path, "--data", data.path])
        #expect(run.status == 0, "\(run.error)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(run.output.utf8)) as? [String: Any])
        #expect(json["examples"] as? Int == 7)
        #expect(json["sequence_length"] as? Int == 12)
        #expect(json["temperature"] as? Double == 1.75)
    }

    /// `lockstep predict` on a `LlamaForSequenceClassification` directory: the labels of the model's own logits.
    @Test func predictReadsALlamaClassifier() throws {
        try requireBinary()
        let folder = try TemporaryDirectory()
        defer { withExtendedLifetime(folder) {} }
        let modelPath = folder.url.appendingPathComponent("llama")
        let config = GPTConfig(
            family: .llama, vocabularySize: 257, contextLength: 16, layerCount: 2, headCount: 2, channels: 16,
            keyValueHeadCount: 1, labelCount: 3, padTokenID: 256)
        let model = GPT(config: config, batchSize: 1, sequenceLength: 16)
        model.initializeRandomly(seed: 7)
        try HuggingFaceModel.save(
            model: model, directory: modelPath, extraConfig: ["id2label": ["0": "neg", "1": "neu", "2": "pos"]])
        try BPETokenizer.bytes().save(directory: modelPath)
        let classifier = try TrainedClassifier(contentsOf: modelPath)
        #expect(classifier.config.family == .llama && classifier.config.keyValueHeads == 1)
        let logits = try classifier.logits(texts: Self.texts, batchSize: 2)

        let jsonl = folder.url.appendingPathComponent("texts.jsonl")
        try Data((Self.texts.map { "{\"text\": \"\($0)\"}" }.joined(separator: "\n") + "\n").utf8).write(to: jsonl)
        let run = try lockstep(["predict", "--model", modelPath.path, "--input", jsonl.path, "--batch-size", "2"])
        #expect(run.status == 0, "\(run.error)")
        let labels = run.output.split(separator: "\n").map {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["label"] as? String
        }
        #expect(labels == Self.texts.indices.map { Self.names[Self.argmax(logits, row: $0)] })
    }

    @Test func predictWritesOneRecordPerRowAsJSONLinesAndCSV() throws {
        try requireBinary()
        let folder = try TemporaryDirectory()
        defer { withExtendedLifetime(folder) {} }  // removed at the end of the test, not after its last use
        let modelPath = folder.url.appendingPathComponent("model")
        try Self.saveClassifier(in: modelPath, temperature: 2)
        let classifier = try TrainedClassifier(contentsOf: modelPath)
        // The commands below run 2 and 8 (so 7) rows per pass: compare with the same batches.
        let logits = try classifier.logits(texts: Self.texts, batchSize: 2)
        let probabilities = try classifier.probabilities(logits: logits)

        // Unlabeled JSONL (only `text`) to standard output.
        let jsonl = folder.url.appendingPathComponent("texts.jsonl")
        let lines = Self.texts.map { "{\"text\": \"\($0)\"}" }.joined(separator: "\n") + "\n"
        try Data(lines.utf8).write(to: jsonl)
        let run = try lockstep(["predict", "--model", modelPath.path, "--input", jsonl.path, "--batch-size", "2"])
        #expect(run.status == 0, "\(run.error)")
        let records = run.output.split(separator: "\n").map {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
        #expect(records.count == 7)
        for (row, record) in records.enumerated() {
            let record = try #require(record)
            #expect(Set(record.keys) == ["index", "label", "probabilities"])
            #expect(record["index"] as? Int == row)
            #expect(record["label"] as? String == Self.names[Self.argmax(logits, row: row)])
            let byName = try #require(record["probabilities"] as? [String: Double])
            for (k, name) in Self.names.enumerated() {
                // Printed at full precision; 1e-15 covers JSONSerialization's parsing of the decimal.
                #expect(abs(byName[name]! - probabilities[row * 3 + k]) <= 1e-15)
            }
        }

        // Labeled TSV to a CSV file.
        let logitsWhole = try classifier.logits(texts: Self.texts, batchSize: 7)
        let tsv = folder.url.appendingPathComponent("test.tsv")
        try Data(Self.tsv().utf8).write(to: tsv)
        let csv = folder.url.appendingPathComponent("predictions.csv")
        let csvRun = try lockstep(["predict", "--model", modelPath.path, "--input", tsv.path, "--output", csv.path])
        #expect(csvRun.status == 0, "\(csvRun.error)")
        let csvLines = try String(contentsOf: csv, encoding: .utf8).split(separator: "\n")
        #expect(csvLines.count == 8)
        #expect(csvLines.first == "index,label,p_neg,p_neu,p_pos,true_label")
        for (row, line) in csvLines.dropFirst().enumerated() {
            let fields = line.split(separator: ",", omittingEmptySubsequences: false)
            #expect(fields.count == 6)
            #expect(fields[0] == "\(row)")
            #expect(String(fields[1]) == Self.names[Self.argmax(logitsWhole, row: row)])
            #expect(String(fields[5]) == Self.labels[row])
        }

        // A one-column TSV has no labels: no true_label column.
        let plain = folder.url.appendingPathComponent("plain.tsv")
        try Data("good\nbad\n".utf8).write(to: plain)
        let plainRun = try lockstep([
            "predict", "--model", modelPath.path, "--input", plain.path, "--output-format", "csv",
        ])
        #expect(plainRun.status == 0, "\(plainRun.error)")
        #expect(plainRun.output.split(separator: "\n").count == 3)
        #expect(plainRun.output.hasPrefix("index,label,p_neg,p_neu,p_pos\n"))
    }

    @Test func evaluateKeepsTheLanguageModelPathForModelsWithoutAHead() throws {
        try requireBinary()
        let folder = try TemporaryDirectory()
        defer { withExtendedLifetime(folder) {} }  // removed at the end of the test, not after its last use
        let modelPath = folder.url.appendingPathComponent("lm")
        let languageModel = GPT(
            config: GPTConfig(vocabularySize: 257, contextLength: 8, layerCount: 1, headCount: 1, channels: 8),
            batchSize: 1, sequenceLength: 8)
        languageModel.initializeRandomly(seed: 1)
        try HuggingFaceModel.save(model: languageModel, directory: modelPath)
        let writer = try TokenShardWriter(
            directory: folder.url, prefix: "val", tokensPerShard: 1000, width: .uint16)
        try writer.write((0..<100).map { Int32($0 * 7 % 256) })
        _ = try writer.finish()

        let run = try lockstep([
            "evaluate", "--model", modelPath.path, "--data", folder.url.path + "/val_*.bin", "--batch-size", "2",
        ])
        #expect(run.status == 0, "\(run.error)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(run.output.utf8)) as? [String: Any])
        #expect(Set(json.keys) == ["loss", "perplexity", "windows", "tokens"])
        // A random model is near chance: loss about log 257 = 5.55.
        #expect(abs((json["loss"] as? Double ?? 0) - log(257)) < 0.5)
    }

    @Test func badInputsFailNamingTheFileAndLine() throws {
        try requireBinary()
        let folder = try TemporaryDirectory()
        defer { withExtendedLifetime(folder) {} }  // removed at the end of the test, not after its last use
        let modelPath = folder.url.appendingPathComponent("model")
        try Self.saveClassifier(in: modelPath)

        // A label the model never saw, on line 3.
        var labels = Self.labels
        labels[2] = "meh"
        let unseen = folder.url.appendingPathComponent("unseen.tsv")
        try Data(Self.tsv(labels: labels).utf8).write(to: unseen)
        let evaluate = try lockstep(["evaluate", "--model", modelPath.path, "--data", unseen.path])
        #expect(evaluate.status != 0)
        #expect(evaluate.error.contains("\(unseen.path):3: unknown label 'meh', expected one of neg, neu, pos"), "\(evaluate.error)")

        // A language model given to predict.
        let languageModelPath = folder.url.appendingPathComponent("lm")
        let languageModel = GPT(
            config: GPTConfig(vocabularySize: 257, contextLength: 8, layerCount: 1, headCount: 1, channels: 8),
            batchSize: 1, sequenceLength: 8)
        try HuggingFaceModel.save(model: languageModel, directory: languageModelPath)
        let plain = folder.url.appendingPathComponent("plain.tsv")
        try Data("good\n".utf8).write(to: plain)
        let predictLM = try lockstep(["predict", "--model", languageModelPath.path, "--input", plain.path])
        #expect(predictLM.status != 0)
        #expect(predictLM.error.contains("\(languageModelPath.path): is a language model"), "\(predictLM.error)")

        // A JSONL row without the text field, on line 2.
        let noText = folder.url.appendingPathComponent("bad.jsonl")
        try Data("{\"text\": \"fine\"}\n{\"sentence\": \"no text key\"}\n".utf8).write(to: noText)
        let predictJSONL = try lockstep(["predict", "--model", modelPath.path, "--input", noText.path])
        #expect(predictJSONL.status != 0)
        #expect(predictJSONL.error.contains("\(noText.path):2: missing field 'text'"), "\(predictJSONL.error)")
        #expect(predictJSONL.output.isEmpty)
    }
}

// MARK: - Echo inputs and ensembles

extension ClassifierInferenceTests {
    /// A classifier exported with `echo_inputs` reads each text twice: its logits are those of the same weights
    /// on the doubled texts, truncated to T as usual.
    @Test func anEchoClassifierReadsEachTextTwice() throws {
        let folder = try TemporaryDirectory()
        defer { withExtendedLifetime(folder) {} }  // removed at the end of the test, not after its last use
        let plain = folder.url.appendingPathComponent("plain")
        let echo = folder.url.appendingPathComponent("echo")
        try Self.saveClassifier(in: plain)
        try Self.saveClassifier(in: echo, echo: true)

        let plainClassifier = try TrainedClassifier(contentsOf: plain)
        let echoClassifier = try TrainedClassifier(contentsOf: echo)
        #expect(!plainClassifier.echo && echoClassifier.echo)
        let doubled = Self.texts.map { $0.isEmpty ? "" : $0 + " " + $0 }
        let reference = try Self.referenceLogits(directory: plain, texts: doubled, time: 16, batch: 3)
        #expect(try echoClassifier.logits(texts: Self.texts, batchSize: 3) == reference)
        #expect(try plainClassifier.logits(texts: doubled, batchSize: 3) == reference)

        // A value that is not true or false is an error naming config.json.
        let bad = folder.url.appendingPathComponent("bad")
        try Self.saveClassifier(in: bad)
        let configURL = bad.appendingPathComponent("config.json")
        var json = try #require(JSONSerialization.jsonObject(with: Data(contentsOf: configURL)) as? [String: Any])
        json["echo_inputs"] = "twice"
        try JSONSerialization.data(withJSONObject: json).write(to: configURL)
        #expect {
            _ = try TrainedClassifier(contentsOf: bad)
        } throws: { "\($0)".contains(configURL.path) && "\($0)".contains("echo_inputs") }
    }

    /// `echo` travels with a classifier: checkpoint (`classification.echo`) → export (`echo_inputs`) → import.
    @Test func echoSurvivesExportAndImport() throws {
        let folder = try TemporaryDirectory()
        defer { withExtendedLifetime(folder) {} }  // removed at the end of the test, not after its last use
        let model = try Self.saveClassifier(in: folder.url.appendingPathComponent("hf"))
        let checkpoints = try Self.saveCheckpoint(of: model, in: folder.url, echo: true)
        let checkpoint = checkpoints.appendingPathComponent("step-0000005")
        #expect(try TrainedClassifier(contentsOf: checkpoints).echo)

        let exported = folder.url.appendingPathComponent("exported")
        try ModelExport.writeHuggingFace(checkpoint: checkpoint, to: exported)
        #expect(try ModelExport.echoInputs(directory: exported))
        #expect(try TrainedClassifier(contentsOf: exported).echo)
        let imported = folder.url.appendingPathComponent("imported")
        let state = try TrainingCheckpoint.importHuggingFace(directory: exported, to: imported)
        #expect(state.config.classification?.echo == true)

        // Without echo, nothing is written and nothing is read.
        let plainCheckpoints = try Self.saveCheckpoint(of: model, in: folder.url.appendingPathComponent("plain"))
        let plainExport = folder.url.appendingPathComponent("plain-exported")
        try ModelExport.writeHuggingFace(
            checkpoint: plainCheckpoints.appendingPathComponent("step-0000005"), to: plainExport)
        let json = try #require(JSONSerialization.jsonObject(
            with: Data(contentsOf: plainExport.appendingPathComponent("config.json"))) as? [String: Any])
        #expect(json["echo_inputs"] == nil)
        #expect(try !TrainedClassifier(contentsOf: plainExport).echo)
    }

    /// An ensemble's probabilities are the mean of its members' calibrated ones; a lone member is the model
    /// itself; members with other labels are refused, naming both models.
    @Test func anEnsembleAveragesItsMembersCalibratedProbabilities() throws {
        let folder = try TemporaryDirectory()
        defer { withExtendedLifetime(folder) {} }  // removed at the end of the test, not after its last use
        let paths = (1...3).map { folder.url.appendingPathComponent("member-\($0)") }
        try Self.saveClassifier(in: paths[0], temperature: 2, seed: 7)
        try Self.saveClassifier(in: paths[1], temperature: 0.5, seed: 8)
        try Self.saveClassifier(in: paths[2], seed: 9, echo: true)
        let members = try paths.map { try TrainedClassifier(contentsOf: $0) }
        let ensemble = try ClassifierEnsemble(members: members)

        let logits = try ensemble.memberLogits(texts: Self.texts, sequenceLength: nil, batchSize: 3)
        #expect(logits.count == 3)
        var expected = [Double](repeating: 0, count: Self.texts.count * 3)
        for member in members {
            let p = try member.probabilities(logits: try member.logits(texts: Self.texts, batchSize: 3))
            for i in expected.indices { expected[i] += p[i] }
        }
        let probabilities = try ensemble.probabilities(memberLogits: logits)
        for i in expected.indices { #expect(abs(probabilities[i] - expected[i] / 3) <= 1e-15) }
        // Metrics read log(mean) at temperature 1: the same probabilities again.
        let scores = try ensemble.scores(memberLogits: logits)
        let fromScores = try TemperatureScaling.apply(logits: scores, classCount: 3, temperature: ensemble.scoreTemperature)
        for i in expected.indices { #expect(abs(fromScores[i] - expected[i] / 3) <= 1e-12) }

        let alone = try ClassifierEnsemble(members: [members[0]])
        let aloneLogits = try alone.memberLogits(texts: Self.texts, sequenceLength: nil, batchSize: 3)
        let own = try members[0].logits(texts: Self.texts, batchSize: 3)
        #expect(try alone.probabilities(memberLogits: aloneLogits) == members[0].probabilities(logits: own))
        #expect(try alone.scores(memberLogits: aloneLogits) == own.map(Double.init))
        #expect(alone.scoreTemperature == 2)

        let other = folder.url.appendingPathComponent("other-labels")
        try Self.saveClassifier(in: other, labels: ["a", "b", "c"])
        #expect {
            _ = try ClassifierEnsemble(members: [members[0], try TrainedClassifier(contentsOf: other)])
        } throws: { "\($0)".contains(other.path) && "\($0)".contains(paths[0].path) }
        #expect(throws: ClassifierLoadError.self) { _ = try ClassifierEnsemble(members: []) }
    }

    /// `evaluate` and `predict` with `--model` repeated score the ensemble, agree with each other and with
    /// `ClassifierEnsemble`, and list the members; a language model among them is a clear error.
    @Test func evaluateAndPredictTakeSeveralModelsAsAnEnsemble() throws {
        try requireBinary()
        let folder = try TemporaryDirectory()
        defer { withExtendedLifetime(folder) {} }  // removed at the end of the test, not after its last use
        let paths = (1...2).map { folder.url.appendingPathComponent("member-\($0)") }
        try Self.saveClassifier(in: paths[0], temperature: 2, seed: 7)
        try Self.saveClassifier(in: paths[1], seed: 11, echo: true)
        let data = folder.url.appendingPathComponent("test.tsv")
        try Data(Self.tsv().utf8).write(to: data)
        let ensemble = try ClassifierEnsemble(members: paths.map { try TrainedClassifier(contentsOf: $0) })
        let probabilities = try ensemble.probabilities(
            memberLogits: try ensemble.memberLogits(texts: Self.texts, sequenceLength: nil, batchSize: 8))
        func predicted(_ row: Int) -> Int { (0..<3).max { probabilities[row * 3 + $0] < probabilities[row * 3 + $1] }! }
        let correct = Self.labels.indices.filter { Self.names[predicted($0)] == Self.labels[$0] }.count

        let models = paths.flatMap { ["--model", $0.path] }
        let run = try lockstep(["evaluate"] + models + ["--data", data.path])
        #expect(run.status == 0, "\(run.error)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(run.output.utf8)) as? [String: Any])
        #expect(json["accuracy"] as? Double == Double(correct) / 7)
        #expect(json["temperature"] as? Double == 1)
        #expect(json["model"] == nil)
        let members = try #require(json["members"] as? [[String: Any]])
        #expect(members.map { $0["model"] as? String } == paths.map(\.path))
        #expect(members.map { $0["temperature"] as? Double } == [2, 1])
        #expect(members.map { $0["sequence_length"] as? Int } == [16, 16])
        let loss = -Self.labels.indices.map { log(probabilities[$0 * 3 + Self.names.firstIndex(of: Self.labels[$0])!]) }
            .reduce(0, +) / 7
        #expect(abs((json["loss"] as? Double ?? 0) - loss) < 1e-9)

        let predict = try lockstep(["predict"] + models + ["--input", data.path])
        #expect(predict.status == 0, "\(predict.error)")
        let records = predict.output.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
        #expect(records.count == 7)
        for (row, record) in records.enumerated() {
            #expect(record["label"] as? String == Self.names[predicted(row)])
            let byName = try #require(record["probabilities"] as? [String: Double])
            for (k, name) in Self.names.enumerated() { #expect(abs(byName[name]! - probabilities[row * 3 + k]) <= 1e-15) }
        }

        let languageModel = folder.url.appendingPathComponent("lm")
        let lm = GPT(config: GPTConfig(vocabularySize: 257, contextLength: 8, layerCount: 1, headCount: 1, channels: 8),
                     batchSize: 1, sequenceLength: 8)
        lm.initializeRandomly(seed: 1)
        try HuggingFaceModel.save(model: lm, directory: languageModel)
        let mixed = try lockstep(["evaluate"] + models + ["--model", languageModel.path, "--data", data.path])
        #expect(mixed.status != 0)
        #expect(mixed.error.contains("\(languageModel.path) is a language model"), "\(mixed.error)")
    }
}
