import Foundation
import LockstepFormats
import LockstepModel
import LockstepTestSupport
import LockstepTokenizer
import Testing

@testable import LockstepTraining
import LockstepCheckpoints

/// `lockstep import` / `lockstep export` between Hugging Face GPT-2 directories and Lockstep checkpoints:
/// round trips keep every tensor byte for byte, the checkpoints verify, `transformers` gives our logits, and
/// bad inputs get errors naming the file.
@Suite("Hugging Face import and export")
struct HuggingFaceInteropTests {
    static let lockstep = MPIRun.productsDirectory.appendingPathComponent("lockstep")

    /// A tiny model with random parameters (larger than the initialisation's, so every one matters).
    static func randomModel(family: ModelFamily = .gpt2, labelCount: Int? = nil, seed: UInt64) -> GPT {
        let llama = family == .llama
        let config = GPTConfig(
            family: family, vocabularySize: 300, contextLength: 16, layerCount: 2, headCount: llama ? 4 : 2,
            channels: 16, keyValueHeadCount: llama ? 2 : nil, intermediateSize: llama ? 24 : nil,
            labelCount: labelCount, padTokenID: labelCount == nil ? nil : 0)
        let model = GPT(config: config, batchSize: 2, sequenceLength: 8)
        model.initializeRandomly(seed: seed)
        var random = TestRandom(seed: seed &+ 1)
        for i in model.parameters.indices { model.parameters[i] += Float(random.uniform(-0.05, 0.05)) }
        return model
    }

    /// A Hugging Face directory as `HuggingFaceModel.save` writes it, plus the byte tokenizer's files.
    static func huggingFaceDirectory(_ model: GPT, labels: [String]? = nil, at url: URL) throws {
        let extra: [String: Any]? = labels.map {
            ["id2label": Dictionary(uniqueKeysWithValues: $0.enumerated().map { ("\($0.offset)", $0.element) })]
        }
        try HuggingFaceModel.save(model: model, directory: url, extraConfig: extra)
        try BPETokenizer.bytes().save(directory: url)
    }

    /// A checkpoint as training writes it (through `TrainingCheckpoint.save`), of `model`'s parameters.
    static func checkpoint(_ model: GPT, labels: [String]?, temperature: Double?, in root: URL) throws -> URL {
        let snapshot = WorkerState(count: model.layout.count)
        _ = snapshot.parameters.update(fromContentsOf: model.parameters)
        let config = try TrainingCheckpoint.importedRunConfig(
            model: model.config, labelNames: labels, source: root, tokenizer: "bytes")
        let state = CheckpointState(
            formatVersion: CheckpointState.currentFormatVersion, step: 7, optimizerStep: 7,
            cursor: .init(epoch: 0, position: 0), config: config, model: model.config, tokenizerVocabularySize: 257,
            worldSize: 1, labelNames: labels, skippedSteps: 0, elapsedSeconds: 1, temperature: temperature)
        return try TrainingCheckpoint.save(
            snapshot: snapshot, state: state, layout: model.layout, to: CheckpointDirectory(root: root))
    }

    /// Every tensor of two safetensors files, compared byte for byte.
    static func sameTensors(_ a: URL, _ b: URL) throws -> Bool {
        let first = try SafeTensorsFile.read(a), second = try SafeTensorsFile.read(b)
        guard Set(first.names) == Set(second.names) else { return false }
        return try first.names.allSatisfy { try first.tensor(named: $0).bytes == second.tensor(named: $0).bytes }
    }

    /// Runs the `lockstep` binary; the output ends with stderr.
    static func run(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let result = try MPIRun.command([lockstep.path] + arguments)
        return (result.status, result.output)
    }

    // MARK: - Round trips

    @Test(arguments: [nil, ["negative", "neutral", "positive"]] as [[String]?], ModelFamily.allCases)
    func importThenExportKeepsTensorsAndLabels(labels: [String]?, family: ModelFamily) throws {
        let directory = try TemporaryDirectory()
        let source = directory.url.appendingPathComponent("hf")
        let model = Self.randomModel(family: family, labelCount: labels?.count, seed: 3)
        try Self.huggingFaceDirectory(model, labels: labels, at: source)

        let checkpoint = directory.url.appendingPathComponent("imported")
        let state = try TrainingCheckpoint.importHuggingFace(directory: source, to: checkpoint)
        #expect(state.step == 0)
        #expect(state.model == model.config)
        #expect(state.labelNames == labels)
        #expect(state.tokenizerVocabularySize == 257)
        #expect(state.config.data.tokenizer == checkpoint.path)
        #expect(state.config.task == (labels == nil ? .languageModel : .classification))
        #expect(state.config.classification?.labels == labels)
        #expect(state.config.model.channels == 16 && state.config.model.layers == 2)
        #expect(state.config.model.heads == model.config.headCount)
        #expect(state.config.model.vocabularySize == 300 && state.config.model.contextLength == 16)
        #expect(state.config.model.family == family)

        // A valid checkpoint: checksums hold, it loads with zero moments, and its tokenizer resolves.
        try CheckpointDirectory.verify(checkpoint)
        let snapshot = WorkerState(count: model.layout.count)
        let loaded = try TrainingCheckpoint.load(checkpoint, expectedModel: model.config, into: snapshot)
        #expect(loaded == state)
        #expect(Array(snapshot.parameters) == Array(model.parameters))
        #expect(snapshot.firstMoments.allSatisfy { $0 == 0 } && snapshot.secondMoments.allSatisfy { $0 == 0 })
        #expect(try RunSetup.tokenizer(loaded.config).vocabularySize == 257)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: directory.url.path).filter { $0.hasPrefix(".") }
        #expect(leftovers.isEmpty)

        // Exported again: the same tensors, byte for byte, and the same labels.
        let exported = directory.url.appendingPathComponent("exported")
        try ModelExport.writeHuggingFace(checkpoint: checkpoint, to: exported)
        #expect(try Self.sameTensors(source.appendingPathComponent("model.safetensors"), exported.appendingPathComponent("model.safetensors")))
        #expect(try HuggingFaceModel.loadLabelNames(directory: exported) == labels)
        #expect(try HuggingFaceModel.loadConfig(directory: exported) == model.config)
        #expect(try BPETokenizer.load(directory: exported).vocabularySize == 257)

        // Importing over an existing checkpoint needs `overwrite`.
        #expect(throws: HuggingFaceError.self) { try TrainingCheckpoint.importHuggingFace(directory: exported, to: checkpoint) }
        try TrainingCheckpoint.importHuggingFace(directory: exported, tokenizer: .bytes, to: checkpoint, overwrite: true)
        #expect(try TrainingCheckpoint.readState(checkpoint).config.data.tokenizer == "bytes")
        try CheckpointDirectory.verify(checkpoint)
    }

    @Test func exportWritesClassifierConfigAndReplacesADirectory() throws {
        let directory = try TemporaryDirectory()
        let model = Self.randomModel(labelCount: 2, seed: 5)
        let checkpoint = try Self.checkpoint(model, labels: ["spam", "ham"], temperature: 1.5, in: directory.url.appendingPathComponent("run"))
        let output = directory.url.appendingPathComponent("out")
        try FileManager.default.createDirectory(at: output, withIntermediateDirectories: true)
        try Data("stale".utf8).write(to: output.appendingPathComponent("stale.txt"))
        try ModelExport.writeHuggingFace(checkpoint: checkpoint, to: output)

        let files = try FileManager.default.contentsOfDirectory(atPath: output.path).sorted()
        #expect(files == ["config.json", "merges.txt", "model.safetensors", "vocab.json"])
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: output.appendingPathComponent("config.json"))) as! [String: Any]
        #expect(config["architectures"] as? [String] == ["GPT2ForSequenceClassification"])
        #expect(config["id2label"] as? [String: String] == ["0": "spam", "1": "ham"])
        #expect(config["label2id"] as? [String: Int] == ["spam": 0, "ham": 1])
        #expect(config["pad_token_id"] as? Int == 0)
        #expect(config["calibration_temperature"] as? Double == 1.5)
        #expect(try Self.sameTensors(checkpoint.appendingPathComponent("model.safetensors"), output.appendingPathComponent("model.safetensors")))

        // Imported back, the temperature and labels return.
        let state = try TrainingCheckpoint.importHuggingFace(directory: output, to: directory.url.appendingPathComponent("back"))
        #expect(state.temperature == 1.5)
        #expect(state.labelNames == ["spam", "ham"])
    }

    // MARK: - Errors

    @Test func importErrorsNameTheFile() throws {
        let directory = try TemporaryDirectory()
        let source = directory.url.appendingPathComponent("hf")
        try Self.huggingFaceDirectory(Self.randomModel(seed: 1), at: source)
        let target = directory.url.appendingPathComponent("checkpoint")
        func message(_ body: () throws -> Void) -> String {
            do {
                try body()
                return "no error"
            } catch {
                return "\(error)"
            }
        }
        func importing(_ tokenizer: ImportTokenizer = .modelDirectory) -> String {
            message { try TrainingCheckpoint.importHuggingFace(directory: source, tokenizer: tokenizer, to: target) }
        }

        // The tokenizer files are missing: the message names the directory and the way out.
        for name in ["vocab.json", "merges.txt"] {
            try FileManager.default.moveItem(at: source.appendingPathComponent(name), to: directory.url.appendingPathComponent(name))
        }
        let noTokenizer = importing()
        #expect(noTokenizer.contains(source.path) && noTokenizer.contains("vocab.json") && noTokenizer.contains("bytes"), "\(noTokenizer)")
        #expect(importing(.directory(directory.url)) == "no error")
        try FileManager.default.removeItem(at: target)

        // model.safetensors with the wrong shapes: a config with other channels.
        let config = source.appendingPathComponent("config.json")
        let original = try Data(contentsOf: config)
        var other = Self.randomModel(seed: 1).config
        other.channels = 8
        try HuggingFaceModel.configJSON(other).write(to: config)
        let shapes = importing(.bytes)
        #expect(shapes.contains("model.safetensors") && shapes.contains("shape"), "\(shapes)")

        // Not a GPT-2 config.
        try Data(#"{"model_type": "bert", "vocab_size": 300}"#.utf8).write(to: config)
        let bert = importing(.bytes)
        #expect(bert.contains("config.json") && bert.contains("gpt2"), "\(bert)")

        // Missing files.
        try original.write(to: config)
        try FileManager.default.moveItem(at: source.appendingPathComponent("model.safetensors"), to: directory.url.appendingPathComponent("m"))
        let noWeights = importing(.bytes)
        #expect(noWeights.contains(source.appendingPathComponent("model.safetensors").path) && noWeights.contains("missing"), "\(noWeights)")
        try FileManager.default.removeItem(at: config)
        let noConfig = importing(.bytes)
        #expect(noConfig.contains(config.path) && noConfig.contains("missing"), "\(noConfig)")
        #expect(!FileManager.default.fileExists(atPath: target.path))
    }

    @Test func exportUnderARegularFileFails() throws {
        let directory = try TemporaryDirectory()
        let checkpoint = try Self.checkpoint(Self.randomModel(seed: 2), labels: nil, temperature: nil, in: directory.url.appendingPathComponent("run"))
        let file = directory.url.appendingPathComponent("a-file")
        try Data("x".utf8).write(to: file)
        for output in [file.appendingPathComponent("model"), file.appendingPathComponent("deeper/model"), file] {
            do {
                try ModelExport.writeHuggingFace(checkpoint: checkpoint, to: output)
                Issue.record("export to \(output.path) succeeded")
            } catch {
                #expect("\(error)".contains(file.path), "\(error)")
            }
        }
        #expect(try String(contentsOf: file, encoding: .utf8) == "x")
        // Exporting over the checkpoint itself is refused, and the checkpoint stays whole.
        #expect(throws: HuggingFaceError.self) { try ModelExport.writeHuggingFace(checkpoint: checkpoint, to: checkpoint) }
        try CheckpointDirectory.verify(checkpoint)
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.url.path).sorted() == ["a-file", "run"])
    }

    @Test func commandLineErrorsAreClear() throws {
        let directory = try TemporaryDirectory()
        let missing = try Self.run(["import", "--format", "hf", directory.url.path, directory.url.appendingPathComponent("c").path])
        #expect(missing.status != 0)
        #expect(missing.output.contains(directory.url.appendingPathComponent("config.json").path), "\(missing.output)")
        let format = try Self.run(["export", "--format", "onnx", directory.url.path, directory.url.appendingPathComponent("c").path])
        #expect(format.status != 0 && format.output.contains("'hf'"), "\(format.output)")
    }

    // MARK: - transformers

    static let script = #"""
    import json, sys, torch
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2ForSequenceClassification
    lm_dir, classifier_dir, made_dir = sys.argv[1], sys.argv[2], sys.argv[3]
    tokens, padded = json.loads(sys.argv[4]), json.loads(sys.argv[5])
    with torch.no_grad():
        lm = GPT2LMHeadModel.from_pretrained(lm_dir).eval()
        logits = lm(torch.tensor(tokens)).logits
        classifier = GPT2ForSequenceClassification.from_pretrained(classifier_dir).eval()
        class_logits = classifier(torch.tensor(padded)).logits
        # A classifier made by transformers itself, saved for `lockstep import`.
        torch.manual_seed(0)
        config = GPT2Config(vocab_size=300, n_positions=16, n_embd=16, n_layer=2, n_head=2, pad_token_id=0,
                            id2label={0: "neg", 1: "neu", 2: "pos"}, label2id={"neg": 0, "neu": 1, "pos": 2})
        made = GPT2ForSequenceClassification(config).eval()
        for parameter in made.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
        made.save_pretrained(made_dir, safe_serialization=True)
        made_logits = made(torch.tensor(padded)).logits
    print(json.dumps({"logits": logits.flatten().tolist(), "class_logits": class_logits.flatten().tolist(),
                      "made_logits": made_logits.flatten().tolist(), "labels": classifier.config.id2label,
                      "temperature": classifier.config.calibration_temperature}))
    """#

    @Test(.requires(.transformers)) func transformersAgreesWithExportAndImport() throws {
        try TestEnvironment.require(.transformers)
        let directory = try TemporaryDirectory()
        let lm = Self.randomModel(seed: 11)
        let classifier = Self.randomModel(labelCount: 3, seed: 12)
        let labels = ["red", "green", "blue"]
        let lmCheckpoint = try Self.checkpoint(lm, labels: nil, temperature: nil, in: directory.url.appendingPathComponent("lm-run"))
        let classifierCheckpoint = try Self.checkpoint(
            classifier, labels: labels, temperature: 2.0, in: directory.url.appendingPathComponent("classifier-run"))
        let lmDirectory = directory.url.appendingPathComponent("lm-hf"), classifierDirectory = directory.url.appendingPathComponent("classifier-hf")
        for (checkpoint, output) in [(lmCheckpoint, lmDirectory), (classifierCheckpoint, classifierDirectory)] {
            let result = try Self.run(["export", "--format", "hf", checkpoint.path, output.path])
            try #require(result.status == 0, "lockstep export failed: \(result.output)")
        }

        // Batch (2, T): the second row is 5 real tokens then padding (id 0, which no real token uses).
        let T = 8
        let tokens: [Int32] = (0..<(2 * T)).map { Int32(1 + ($0 * 37) % 299) }
        let lengths: [Int32] = [8, 5]
        var padded = tokens
        for t in 5..<T { padded[T + t] = 0 }
        func json(_ rows: [Int32]) -> String {
            "[" + [rows[0..<T], rows[T...]].map { "[" + $0.map(String.init).joined(separator: ",") + "]" }.joined(separator: ",") + "]"
        }
        let madeDirectory = directory.url.appendingPathComponent("made-hf")
        let python = try MPIRun.command(
            TestEnvironment.pythonCommand(["-c", Self.script, lmDirectory.path, classifierDirectory.path, madeDirectory.path, json(tokens), json(padded)]),
            timeout: 300)
        try #require(python.status == 0, "python failed: \(python.output)")
        let jsonLine = try #require(python.output.split(separator: "\n").last { $0.hasPrefix("{") })
        let result = try JSONSerialization.jsonObject(with: Data(jsonLine.utf8)) as! [String: Any]
        #expect(result["labels"] as? [String: String] == ["0": "red", "1": "green", "2": "blue"])
        #expect(result["temperature"] as? Double == 2.0)

        func maxDifference(_ ours: UnsafeBufferPointer<Float>, _ theirs: Any?) -> Double {
            let theirs = theirs as! [Double]
            guard ours.count == theirs.count else { return .infinity }
            return zip(ours, theirs).reduce(0) { max($0, abs(Double($1.0) - $1.1)) }
        }
        lm.forward(tokens: tokens, targets: nil, batch: 2)
        classifier.classify(tokens: padded, lengths: lengths, labels: nil, batch: 2)
        let lmError = maxDifference(lm.logits, result["logits"])
        let classifierError = maxDifference(classifier.classLogits, result["class_logits"])

        // The transformers-made classifier, imported with the byte tokenizer, gives Python's logits here.
        let imported = directory.url.appendingPathComponent("made-checkpoint")
        let importResult = try Self.run(["import", "--format", "hf", "--tokenizer", "bytes", madeDirectory.path, imported.path])
        try #require(importResult.status == 0, "lockstep import failed: \(importResult.output)")
        let state = try TrainingCheckpoint.readState(imported)
        #expect(state.labelNames == ["neg", "neu", "pos"])
        let made = GPT(config: state.model, batchSize: 2, sequenceLength: T)
        let snapshot = WorkerState(count: made.layout.count)
        _ = try TrainingCheckpoint.load(imported, expectedModel: state.model, into: snapshot)
        _ = made.parameters.update(fromContentsOf: snapshot.parameters)
        made.classify(tokens: padded, lengths: lengths, labels: nil, batch: 2)
        let madeError = maxDifference(made.classLogits, result["made_logits"])

        print("HF interop: max |Δ| LM logits \(lmError), classifier logits \(classifierError), imported classifier \(madeError)")
        #expect(lmError < 1e-5)
        #expect(classifierError < 1e-5)
        #expect(madeError < 1e-5)
    }
}
