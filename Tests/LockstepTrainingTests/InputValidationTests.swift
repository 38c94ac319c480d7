import Foundation
import LockstepFormats
import LockstepModel
import LockstepTestSupport
import LockstepTokenizer
import Testing

@testable import LockstepCheckpoints
@testable import LockstepConfig
@testable import LockstepTraining

/// Issue 16: every input is checked before work starts, and the error names the key or option and what was
/// expected, instead of a trap, a NaN run or a read past a table.
@Suite("Input validation")
struct InputValidationTests {
    static let minimal = """
        model: {context_length: 32, layers: 2, heads: 4, channels: 48}
        data: {train: data/train_*.bin}
        training: {micro_batch_size: 4, global_batch_tokens: 256}
        """

    func configError(_ overrides: [String], yaml: String = minimal) -> ConfigError? {
        #expect(throws: ConfigError.self) { try RunConfig(yaml: yaml, file: "run.yaml", overrides: overrides) }
    }

    @Test func hugeBatchesAndContextsAreErrorsNotOverflowTraps() throws {
        let batch = configError(
            ["training.global_batch_size=9223372036854775807"],
            yaml: Self.minimal.replacingOccurrences(of: ", global_batch_tokens: 256", with: ""))
        #expect(batch?.key == "training.global_batch_size", "\(String(describing: batch))")
        #expect(batch?.message.contains("tokens per step") == true, "\(String(describing: batch))")

        let context = configError(["model.context_length=9223372036854775807"])
        #expect(context?.key == "model.context_length" && context?.message.contains("≤") == true, "\(String(describing: context))")
        let micro = configError(["training.micro_batch_size=4611686018427387904"])
        #expect(micro?.key == "training.micro_batch_size", "\(String(describing: micro))")
        let tokens = configError(["training.global_batch_tokens=9223372036854775807"])
        #expect(tokens?.key == "training.global_batch_tokens", "\(String(describing: tokens))")
        let channels = configError(["model.channels=9223372036854775800", "model.heads=8"])
        #expect(channels?.key == "model.channels", "\(String(describing: channels))")
    }

    /// Found by fuzzing the config loader (docs/FUZZING.md): YAML nested tens of thousands deep, in flow or
    /// block style, and a `--set` key of 100,000 dotted parts overflowed the stack while being composed.
    @Test func deeplyNestedConfigsAreErrorsNotStackOverflows() throws {
        let flow = "a: " + String(repeating: "[", count: 50_000) + String(repeating: "]", count: 50_000)
        let block = "a:\n" + (1..<3000).map { String(repeating: " ", count: 2 * $0) + "b:\n" }.joined()
        let dashes = "a:\n" + String(repeating: "- ", count: 40) + "x\n"
        for (name, text) in [("flow", flow), ("block", block), ("dashes", dashes)] {
            let error = #expect(throws: ConfigError.self) { try RunConfig(yaml: text, file: "deep.yaml") }
            #expect(error?.file == "deep.yaml" && error?.message.contains("nested more than 32 levels") == true, "\(name): \(String(describing: error))")
        }
        let key = "model" + String(repeating: ".a", count: 100_000)
        let long = configError(["\(key)=1"])
        #expect(long?.file == "--set" && long?.message.contains("dot-separated") == true, "\(String(describing: long))")
        let empty = configError(["model..layers=1"])
        #expect(empty?.file == "--set", "\(String(describing: empty))")
        let deepValue = configError(["model.layers=" + String(repeating: "[", count: 100) + String(repeating: "]", count: 100)])
        #expect(deepValue?.message.contains("nested more than") == true, "\(String(describing: deepValue))")
        // Every shipped config is far from the limit.
        for file in try FileManager.default.contentsOfDirectory(atPath: SharedFiles.packageRoot.appendingPathComponent("configs").path) {
            let text = try String(contentsOf: SharedFiles.packageRoot.appendingPathComponent("configs/\(file)"), encoding: .utf8)
            try ConfigSection.checkNesting(text, file: file)
        }
    }

    /// The configs a user starts from (the README, the recipes, the benchmarks) must load as they ship: a key
    /// renamed or a value moved out of range would otherwise show up only when someone runs them.
    @Test func everyShippedConfigLoads() throws {
        let directory = SharedFiles.packageRoot.appendingPathComponent("configs")
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".yaml") }
        #expect(files.count >= 5, "\(files)")
        for file in files {
            #expect(throws: Never.self, "\(file)") { try RunConfig.load(file: directory.appendingPathComponent(file)) }
        }
    }

    @Test func optimizerAndScheduleRanges() throws {
        for (override, key, expected) in [
            ("optimizer.beta1=1", "optimizer.beta1", "[0.0, 1.0)"),
            ("optimizer.beta2=1.5", "optimizer.beta2", "[0.0, 1.0)"),
            ("optimizer.beta1=-0.1", "optimizer.beta1", "[0.0, 1.0)"),
            ("optimizer.epsilon=0", "optimizer.epsilon", "> 0"),
            ("optimizer.weight_decay=-1", "optimizer.weight_decay", "≥ 0"),
            ("schedule.learning_rate=.nan", "schedule.learning_rate", "finite"),
            ("schedule.learning_rate=.inf", "schedule.learning_rate", "finite"),
            ("schedule.learning_rate=-1e-3", "schedule.learning_rate", "≥ 0"),
            ("training.micro_batch_size=0", "training.micro_batch_size", "≥ 1"),
            ("model.layers=0", "model.layers", "≥ 1"),
        ] {
            let error = configError([override])
            #expect(error?.key == key, "\(override): \(String(describing: error))")
            #expect(error?.message.contains(expected) == true, "\(override): \(String(describing: error))")
            #expect(error?.file == "--set" || error?.file == "run.yaml")
        }
        // Within range: accepted.
        let config = try RunConfig(yaml: Self.minimal, overrides: ["optimizer.beta1=0", "optimizer.beta2=0.999999"])
        #expect(config.optimizer.beta2 == 0.999999)
    }

    @Test func aModelThatCannotFitIsRefusedWithTheEstimate() throws {
        let memory = try #require(RunSetup.physicalMemory)
        let config = try RunConfig(
            yaml: Self.minimal,
            overrides: ["model.channels=65536", "model.heads=64", "model.layers=64", "model.context_length=4096",
                        "training.global_batch_tokens=16384"])
        let estimate = try #require(RunSetup.memoryEstimate(config, modelConfig: try RunSetup.modelConfig(config, tokenizer: BPETokenizer.bytes(), checkingMemory: false)))
        #expect(estimate.perWorker > memory)
        let error = #expect(throws: ConfigError.self) { try RunSetup.modelConfig(config, tokenizer: BPETokenizer.bytes()) }
        let message = error?.description ?? ""
        #expect(message.contains("GiB per worker") && message.contains("for the coordinator") && message.contains("of memory"), "\(message)")
        // The default small model fits.
        let small = try RunConfig(yaml: Self.minimal)
        _ = try RunSetup.modelConfig(small, tokenizer: BPETokenizer.bytes())
        #expect(try #require(RunSetup.memoryEstimate(small, modelConfig: RunSetup.modelConfig(small, tokenizer: BPETokenizer.bytes()))).perWorker < 64 << 20)
    }

    /// Sharded optimizer state: each worker holds its 1/W share of the two moments, so the estimate per worker
    /// drops by 2·P·(1 - 1/W) floats; the coordinator keeps the whole state. A run that fits only sharded is
    /// refused replicated with a hint to shard.
    @Test func shardingShrinksTheEstimatePerWorker() throws {
        let base = ["model.channels=768", "model.heads=12", "model.layers=12", "model.context_length=64",
                    "model.vocab_size=50304", "training.sequence_length=64", "training.global_batch_tokens=256",
                    "training.micro_batch_size=2", "distributed.workers=2"]
        let replicated = try RunConfig(yaml: Self.minimal, overrides: base)
        let sharded = try RunConfig(yaml: Self.minimal, overrides: base + ["distributed.shard_optimizer=true"])
        let model = try RunSetup.modelConfig(replicated, tokenizer: BPETokenizer.bytes(), checkingMemory: false)
        let a = try #require(RunSetup.memoryEstimate(replicated, modelConfig: model))
        let b = try #require(RunSetup.memoryEstimate(sharded, modelConfig: model))
        let parameters = ParameterLayout(config: model).count
        #expect(a.perWorker - b.perWorker == 4 * (2 * parameters - 2 * ((parameters + 1) / 2)))
        #expect(a.coordinator == b.coordinator && a.coordinator == 12 * parameters)
        #expect(a.total(workers: 2) == 2 * a.perWorker + a.coordinator)
        #expect(a.describe(workers: 2).contains("per worker × 2 workers"))
    }

    // MARK: - Hugging Face config.json variants

    static func savedModel(_ extra: [String: Any], in directory: URL) throws -> URL {
        let config = GPTConfig(vocabularySize: 300, contextLength: 16, layerCount: 1, headCount: 2, channels: 8)
        let model = GPT(config: config, batchSize: 1, sequenceLength: 4)
        model.initializeRandomly(seed: 3)
        let folder = directory.appendingPathComponent(UUID().uuidString)
        try HuggingFaceModel.save(model: model, directory: folder, extraConfig: extra)
        return folder
    }

    @Test func unsupportedGPT2VariantsAreRefusedNamingConfigAndKey() throws {
        let directory = try TemporaryDirectory()
        for (key, value) in [
            ("tie_word_embeddings", false), ("scale_attn_by_inverse_layer_idx", true), ("scale_attn_weights", false),
        ] {
            let folder = try Self.savedModel([key: value], in: directory.url)
            let error = #expect(throws: HuggingFaceError.self) { try HuggingFaceModel.loadConfig(directory: folder) }
            #expect(error?.file.hasSuffix("config.json") == true)
            #expect(error?.reason.contains(key) == true, "\(String(describing: error))")
        }
        // The defaults spelt out, and reorder_and_upcast_attn (float32 attention, which Lockstep computes anyway).
        for extra: [String: Any] in [
            ["tie_word_embeddings": true, "scale_attn_weights": true, "scale_attn_by_inverse_layer_idx": false],
            ["reorder_and_upcast_attn": true],
        ] {
            let folder = try Self.savedModel(extra, in: directory.url)
            #expect(try HuggingFaceModel.loadConfig(directory: folder).vocabularySize == 300)
        }
        let notBool = try Self.savedModel(["scale_attn_weights": "yes"], in: directory.url)
        #expect(throws: HuggingFaceError.self) { try HuggingFaceModel.loadConfig(directory: notBool) }
    }

    @Test func anUntiedHeadInTheWeightsIsRefused() throws {
        let directory = try TemporaryDirectory()
        let config = GPTConfig(vocabularySize: 300, contextLength: 16, layerCount: 1, headCount: 2, channels: 8)
        let model = GPT(config: config, batchSize: 1, sequenceLength: 4)
        model.initializeRandomly(seed: 3)
        let wte = model.layout.tensor(named: "transformer.wte.weight")!
        func write(head: [Float]) throws -> SafeTensors {
            var writer = SafeTensorsWriter()
            for tensor in model.layout.tensors {
                try writer.add(tensor.name, floats: Array(model.parameters[tensor.range]), shape: tensor.shape)
            }
            try writer.add("lm_head.weight", floats: head, shape: wte.shape)
            let url = directory.url.appendingPathComponent("\(UUID().uuidString).safetensors")
            try writer.write(to: url)
            return try SafeTensorsFile.read(url)
        }
        let target = GPT(config: config, batchSize: 1, sequenceLength: 4)
        // The tied head, stored as transformers sometimes does: accepted.
        try HuggingFaceModel.loadParameters(from: write(head: Array(model.parameters[wte.range])), into: target.parameters, layout: target.layout)
        var untied = Array(model.parameters[wte.range])
        untied[5] += 1
        let error = #expect(throws: HuggingFaceError.self) {
            try HuggingFaceModel.loadParameters(from: write(head: untied), into: target.parameters, layout: target.layout)
        }
        #expect(error?.reason.contains("lm_head.weight differs") == true, "\(String(describing: error))")
    }

    @Test func malformedChecksumsAreNamedErrors() throws {
        let temporary = try TemporaryDirectory()
        let directory = CheckpointDirectory(root: temporary.url)
        let checkpoint = try directory.save(step: 1, files: [("state.json", { try Data("{}".utf8).write(to: $0) })])
        // Only state.json here: the checks of checksums.json itself, not the set of files a checkpoint needs.
        try CheckpointDirectory.verify(checkpoint, required: ["state.json"])
        let checksums = checkpoint.appendingPathComponent("checksums.json")
        for (text, expected) in [
            ("[1, 2]", "expected a JSON object"), (#"{"../../x": "00"}"#, "is not a file name of this checkpoint"),
            (#"{"state.json": "zz"}"#, "expected 64 hex digits"), ("{}", "does not list state.json"),
        ] {
            try Data(text.utf8).write(to: checksums)
            let error = #expect(throws: CheckpointError.self) {
                try CheckpointDirectory.verify(checkpoint, required: ["state.json"])
            }
            let message = error.map { "\($0)" } ?? ""
            #expect(message.contains("checksums.json") && message.contains(expected), "\(text): \(message)")
        }
    }

    // MARK: - Command line

    static let binary = MPIRun.productsDirectory.appendingPathComponent("lockstep")

    func lockstep(_ arguments: [String]) throws -> (status: Int32, error: String) {
        let result = try MPIRun.command([Self.binary.path] + arguments, timeout: 120)
        return (result.status, result.output)
    }

    @Test func commandOptionsAreCheckedBeforeWork() throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.binary.path), "\(Self.binary.path) is not built")
        let directory = try TemporaryDirectory()
        // A model whose vocabulary (100) is smaller than the byte tokenizer's (257).
        let config = GPTConfig(vocabularySize: 100, contextLength: 16, layerCount: 1, headCount: 2, channels: 8)
        let model = GPT(config: config, batchSize: 1, sequenceLength: 4)
        model.initializeRandomly(seed: 3)
        let folder = directory.url.appendingPathComponent("model")
        try HuggingFaceModel.save(model: model, directory: folder)

        for (arguments, expected) in [
            (["evaluate", "--model", folder.path, "--data", "x.bin", "--batch-size", "0"], "--batch-size must be at least 1"),
            (["predict", "--model", folder.path, "--input", "x.tsv", "--batch-size", "0"], "--batch-size must be at least 1"),
            (["generate", "--model", folder.path, "--top-p", "2"], "--top-p must be in (0, 1]"),
            (["generate", "--model", folder.path, "--top-p", "0"], "--top-p must be in (0, 1]"),
            (["generate", "--model", folder.path, "--temperature=-1"], "--temperature must be"),
            (["generate", "--model", folder.path, "--top-k=-3"], "--top-k must be at least 0"),
            (["generate", "--model", folder.path, "--max-tokens=-1"], "--max-tokens must be at least 0"),
            (["generate", "--model", folder.path, "--tokenizer", "bytes", "--prompt", "hi"], "has 257 entries, more than the model's vocabulary of 100"),
        ] {
            let run = try lockstep(arguments)
            #expect(run.status != 0, "\(arguments)")
            #expect(run.error.contains(expected), "\(arguments): \(run.error)")
        }
    }
}
