import Foundation
import LockstepFormats
import LockstepTestSupport
import Testing

@testable import LockstepModel

/// Hugging Face directories: config parsing, loading the reference weights, saving and reloading, and errors.
@Suite struct HuggingFaceGPT2Tests {
    static let lmDirectory = SharedFiles.reference.appendingPathComponent("lm")
    static let classifierDirectory = SharedFiles.reference.appendingPathComponent("classifier")

    static func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("lockstep-model-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    @Test(.requires(.shared(Self.classifierDirectory))) func loadsConfigs() throws {
        try TestEnvironment.require(.shared(Self.classifierDirectory))
        let lm = try HuggingFaceModel.loadConfig(directory: Self.lmDirectory)
        #expect(lm == GPTConfig(vocabularySize: 64, contextLength: 32, layerCount: 2, headCount: 4, channels: 48, padTokenID: 0))
        let classifier = try HuggingFaceModel.loadConfig(directory: Self.classifierDirectory)
        #expect(classifier.labelCount == 3)
        #expect(classifier.padTokenID == 0)
        #expect(try HuggingFaceModel.loadLabelNames(directory: Self.classifierDirectory) == ["LABEL_0", "LABEL_1", "LABEL_2"])
        #expect(try HuggingFaceModel.loadLabelNames(directory: Self.lmDirectory) == nil)
    }

    @Test(.requires(.shared(Self.lmDirectory))) func loadsWeightsExactly() throws {
        try TestEnvironment.require(.shared(Self.lmDirectory))
        let config = try HuggingFaceModel.loadConfig(directory: Self.lmDirectory)
        let model = GPT(config: config, batchSize: 1, sequenceLength: 8)
        try HuggingFaceModel.load(directory: Self.lmDirectory, into: model)
        let file = try SafeTensorsFile.read(Self.lmDirectory.appendingPathComponent("model.safetensors"))
        for tensor in model.layout.tensors {
            #expect(Array(model.parameters[tensor.range]) == (try file.floats(named: tensor.name)), "\(tensor.name)")
        }
    }

    @Test func saveThenReloadIsIdentical() throws {
        for labelCount in [nil, 3] as [Int?] {
            let config = GPTConfig(
                vocabularySize: 50, contextLength: 16, layerCount: 3, headCount: 2, channels: 8, labelCount: labelCount,
                padTokenID: labelCount == nil ? nil : 0)
            let model = GPT(config: config, batchSize: 1, sequenceLength: 16)
            model.initializeRandomly(seed: 3)
            let directory = try Self.temporaryDirectory()
            defer { try? FileManager.default.removeItem(at: directory) }
            let names = labelCount == nil ? nil : ["id2label": ["0": "negative", "1": "neutral", "2": "positive"]]
            try HuggingFaceModel.save(model: model, directory: directory, extraConfig: names)

            let reloadedConfig = try HuggingFaceModel.loadConfig(directory: directory)
            #expect(reloadedConfig == config)
            let reloaded = GPT(config: reloadedConfig, batchSize: 1, sequenceLength: 4)
            try HuggingFaceModel.load(directory: directory, into: reloaded)
            #expect(Array(reloaded.parameters) == Array(model.parameters))
            if labelCount != nil {
                #expect(try HuggingFaceModel.loadLabelNames(directory: directory) == ["negative", "neutral", "positive"])
                let json = try JSONSerialization.jsonObject(with: Data(contentsOf: directory.appendingPathComponent("config.json"))) as! [String: Any]
                #expect(json["label2id"] as? [String: Int] == ["negative": 0, "neutral": 1, "positive": 2])
                #expect(json["architectures"] as? [String] == ["GPT2ForSequenceClassification"])
            }
        }
    }

    @Test func acceptsNamesWithoutPrefixAndIgnoresBuffers() throws {
        let config = GPTConfig(vocabularySize: 10, contextLength: 4, layerCount: 1, headCount: 1, channels: 4)
        let model = GPT(config: config, batchSize: 1, sequenceLength: 4)
        model.initializeRandomly(seed: 1)
        var writer = SafeTensorsWriter()
        for tensor in model.layout.tensors {
            let name = tensor.name.replacingOccurrences(of: "transformer.", with: "")
            try writer.add(name, floats: Array(model.parameters[tensor.range]), shape: tensor.shape)
        }
        // A stored head must be the tied one (issue 16: a different one is refused, see InputValidationTests).
        let wte = model.layout.tensor(named: "transformer.wte.weight")!
        try writer.add("lm_head.weight", floats: Array(model.parameters[wte.range]), shape: [10, 4])
        try writer.add("h.0.attn.bias", floats: [Float](repeating: 1, count: 16), shape: [1, 1, 4, 4])
        try writer.add("h.0.attn.masked_bias", floats: [-1e4], shape: [])
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try writer.write(to: directory.appendingPathComponent("model.safetensors"))
        let other = GPT(config: config, batchSize: 1, sequenceLength: 4)
        try HuggingFaceModel.load(directory: directory, into: other)
        #expect(Array(other.parameters) == Array(model.parameters))
    }

    @Test func errorsNameTheTensor() throws {
        let config = GPTConfig(vocabularySize: 10, contextLength: 4, layerCount: 1, headCount: 1, channels: 4)
        let model = GPT(config: config, batchSize: 1, sequenceLength: 4)
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let url = directory.appendingPathComponent("model.safetensors")

        func write(skipping skipped: String? = nil, reshaping reshaped: String? = nil, extra: String? = nil) throws {
            var writer = SafeTensorsWriter()
            for tensor in model.layout.tensors where tensor.name != skipped {
                let shape = tensor.name == reshaped ? [tensor.count] : tensor.shape
                try writer.add(tensor.name, floats: Array(model.parameters[tensor.range]), shape: shape)
            }
            if let extra { try writer.add(extra, floats: [1], shape: [1]) }
            try writer.write(to: url)
        }
        func expectFailure(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) {
            #expect(sourceLocation: sourceLocation) {
                try HuggingFaceModel.load(directory: directory, into: model)
            } throws: { error in
                "\(error)".contains(text) && "\(error)".contains(url.path)
            }
        }
        try write(skipping: "transformer.h.0.mlp.c_fc.bias")
        expectFailure("missing tensor 'transformer.h.0.mlp.c_fc.bias'")
        try write(reshaping: "transformer.h.0.attn.c_attn.weight")
        expectFailure("tensor 'transformer.h.0.attn.c_attn.weight' has shape [48], expected [4, 12]")
        try write(extra: "transformer.h.7.ln_1.weight")
        expectFailure("unexpected tensor 'transformer.h.7.ln_1.weight'")

        // A classifier may start from a language model's file when asked to.
        var classifierConfig = config
        classifierConfig.labelCount = 2
        let classifier = GPT(config: classifierConfig, batchSize: 1, sequenceLength: 4)
        try write()
        #expect(throws: HuggingFaceError.self) { try HuggingFaceModel.load(directory: directory, into: classifier) }
        try HuggingFaceModel.load(directory: directory, into: classifier, requireScore: false)

        // config.json problems name the key.
        try Data(#"{"model_type": "gpt2", "n_embd": 4, "n_layer": 1, "n_head": 1, "vocab_size": 10}"#.utf8)
            .write(to: directory.appendingPathComponent("config.json"))
        #expect {
            try HuggingFaceModel.loadConfig(directory: directory)
        } throws: { error in
            "\(error)".contains("n_positions") && "\(error)".contains("config.json")
        }
        try Data(#"{"model_type": "gpt2", "n_embd": 4, "n_layer": 1, "n_head": 3, "vocab_size": 10, "n_ctx": 4}"#.utf8)
            .write(to: directory.appendingPathComponent("config.json"))
        #expect {
            try HuggingFaceModel.loadConfig(directory: directory)
        } throws: { error in
            "\(error)".contains("multiple of headCount")
        }
    }
}
