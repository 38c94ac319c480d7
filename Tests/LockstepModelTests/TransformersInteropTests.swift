import Foundation
import LockstepFormats
import LockstepTestSupport
import Testing

@testable import LockstepModel

/// A directory written by `HuggingFaceModel.save` loads in Hugging Face `transformers` and gives our logits
/// (within 1e-4 relative to the logits' scale). Needs a Python with torch and transformers (`TestEnvironment`).
@Suite struct TransformersInteropTests {
    /// Loads both directories with the Auto classes, so each family's own classes read them.
    static let script = #"""
    import json, sys, torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification
    lm_dir, classifier_dir, tokens, padded = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
    with torch.no_grad():
        lm = AutoModelForCausalLM.from_pretrained(lm_dir).eval()
        logits = lm(torch.tensor(tokens)).logits
        classifier = AutoModelForSequenceClassification.from_pretrained(classifier_dir).eval()
        class_logits = classifier(torch.tensor(padded)).logits
    print(type(lm).__name__, type(classifier).__name__, file=sys.stderr)
    print(json.dumps({"logits": logits.flatten().tolist(), "class_logits": class_logits.flatten().tolist(),
                      "labels": classifier.config.id2label}))
    """#

    /// Runs the test Python with `arguments`: its status, and its output (with stderr when it failed).
    static func python(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = TestEnvironment.pythonCommand(arguments)
        let pipe = Pipe(), errors = Pipe()
        process.standardOutput = pipe
        process.standardError = errors
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        let errorData = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        return (process.terminationStatus, process.terminationStatus == 0 ? text : text + String(decoding: errorData, as: UTF8.self))
    }

    static let configs = [
        GPTConfig(vocabularySize: 37, contextLength: 16, layerCount: 2, headCount: 3, channels: 12, padTokenID: 0),
        GPTConfig(
            family: .llama, vocabularySize: 37, contextLength: 16, layerCount: 2, headCount: 4, channels: 16,
            keyValueHeadCount: 2, intermediateSize: 24, ropeTheta: 500, padTokenID: 0),
    ]

    @Test(.requires(.transformers), arguments: Self.configs) func transformersLoadsSavedModels(config: GPTConfig) throws {
        try TestEnvironment.require(.transformers)
        let T = 10
        let lm = GPT(config: config, batchSize: 2, sequenceLength: T)
        lm.initializeRandomly(seed: 21)
        // Larger norm and bias values than the initialisation's, so every parameter matters.
        var random = TestRandom(seed: 4)
        for i in lm.parameters.indices { lm.parameters[i] += Float(random.uniform(-0.05, 0.05)) }
        var classifierConfig = config
        classifierConfig.labelCount = 4
        let classifier = GPT(config: classifierConfig, batchSize: 2, sequenceLength: T)
        // The classifier's body is the language model's (without an untied lm_head), plus a random score head.
        for tensor in classifier.layout.tensors {
            guard let source = lm.layout.tensor(named: tensor.name) else {
                for i in tensor.range { classifier.parameters[i] = Float(random.uniform(-0.3, 0.3)) }
                continue
            }
            _ = UnsafeMutableBufferPointer(rebasing: classifier.parameters[tensor.range])
                .update(fromContentsOf: lm.parameters[source.range])
        }

        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("lockstep-hf-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let lmDirectory = directory.appendingPathComponent("lm"), classifierDirectory = directory.appendingPathComponent("classifier")
        try HuggingFaceModel.save(model: lm, directory: lmDirectory)
        try HuggingFaceModel.save(
            model: classifier, directory: classifierDirectory,
            extraConfig: ["id2label": ["0": "a", "1": "b", "2": "c", "3": "d"]])

        let tokens: [Int32] = (0..<(2 * T)).map { Int32(1 + ($0 * 7) % 36) }
        let lengths: [Int32] = [10, 6]
        var padded = tokens
        for i in 6..<T { padded[T + i] = 0 }
        func json(_ rows: [Int32]) -> String { "[" + [rows[0..<T], rows[T...]].map { "[" + $0.map(String.init).joined(separator: ",") + "]" }.joined(separator: ",") + "]" }
        let (status, output) = try Self.python(["-c", Self.script, lmDirectory.path, classifierDirectory.path, json(tokens), json(padded)])
        try #require(status == 0, "python failed: \(output)")
        let result = try JSONSerialization.jsonObject(with: Data(output.utf8)) as! [String: Any]
        let theirLogits = (result["logits"] as! [Double]), theirClassLogits = (result["class_logits"] as! [Double])
        #expect(result["labels"] as? [String: String] == ["0": "a", "1": "b", "2": "c", "3": "d"])

        lm.forward(tokens: tokens, targets: nil, batch: 2)
        classifier.classify(tokens: padded, lengths: lengths, labels: nil, batch: 2)
        func scaled(_ ours: some Collection<Float>, _ theirs: [Double]) -> Double {
            let largest = theirs.reduce(0) { max($0, abs($1)) }
            return maxRelativeError(Array(ours), theirs, floor: 0.01 * largest)
        }
        let logitsError = scaled(lm.logits, theirLogits), classError = scaled(classifier.classLogits, theirClassLogits)
        print("transformers interop (\(config.family)): LM logits error \(logitsError), classifier logits error \(classError)")
        #expect(logitsError < 1e-4)
        #expect(classError < 1e-4)
    }
}
