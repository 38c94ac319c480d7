import Foundation
import LockstepFormats

/// A Hugging Face model directory that cannot be used; names the file, the key or tensor, and what was expected.
public struct HuggingFaceError: Error, CustomStringConvertible, Equatable {
    public var file: String
    public var reason: String

    public init(file: String, _ reason: String) {
        self.file = file
        self.reason = reason
    }

    public var description: String { "\(file): \(reason)" }
}

/// Reading and writing Hugging Face model directories (`config.json` + `model.safetensors`) of both families,
/// as `GPT2LMHeadModel`, `GPT2ForSequenceClassification`, `LlamaForCausalLM` and
/// `LlamaForSequenceClassification` save them. The parameter layout uses Hugging Face's names and storage
/// (GPT-2's Conv1D `(in, out)`, Llama's `(out, in)`), so tensors copy straight across; a tied `lm_head.weight`
/// is not stored.
public enum HuggingFaceModel {
    public static let configFile = "config.json"
    public static let weightsFile = "model.safetensors"

    // MARK: - config.json

    /// Reads `config.json` of a GPT-2 (`model_type` gpt2 or absent) or Llama (`llama`) model. A model whose
    /// `architectures` names a `…ForSequenceClassification` class gets a `labelCount` from `id2label` or
    /// `num_labels` (2, Hugging Face's default, when neither is given). Variants the model does not implement
    /// are refused, never ignored.
    /// - Throws: `HuggingFaceError` naming the file and key that is missing or malformed.
    public static func loadConfig(directory: URL) throws -> GPTConfig {
        let object = try readConfigObject(directory: directory)
        let keys = ConfigKeys(object: object, file: directory.appendingPathComponent(configFile).path)
        let config: GPTConfig
        switch object["model_type"] as? String {
        case nil, "gpt2": config = try gpt2Config(keys)
        case "llama": config = try llamaConfig(keys)
        case let other?:
            throw HuggingFaceError(file: keys.file, "model_type is '\(other)', expected 'gpt2' or 'llama'")
        }
        if let problem = config.problems.first {
            throw HuggingFaceError(file: keys.file, problem)
        }
        return config
    }

    /// Typed reads of config.json's keys; errors name the file and key.
    struct ConfigKeys {
        let object: [String: Any]
        let file: String

        func integer(_ keys: [String], default fallback: Int? = nil) throws -> Int {
            for key in keys {
                guard let value = object[key], !(value is NSNull) else { continue }
                guard let number = value as? NSNumber, let exact = Int(exactly: number.doubleValue) else {
                    throw HuggingFaceError(file: file, "key '\(key)' is \(value), expected an integer")
                }
                return exact
            }
            if let fallback { return fallback }
            throw HuggingFaceError(file: file, "missing key '\(keys.joined(separator: "' or '"))'")
        }

        func number(_ key: String, in table: [String: Any]? = nil) throws -> Double? {
            guard let value = (table ?? object)[key], !(value is NSNull) else { return nil }
            guard let number = value as? NSNumber else {
                throw HuggingFaceError(file: file, "key '\(key)' is \(value), expected a number")
            }
            return number.doubleValue
        }

        func flag(_ key: String) throws -> Bool? {
            guard let value = object[key], !(value is NSNull) else { return nil }
            guard let number = value as? NSNumber, number == 0 || number == 1 else {
                throw HuggingFaceError(file: file, "key '\(key)' is \(value), expected true or false")
            }
            return number.boolValue
        }

        var isClassifier: Bool {
            (object["architectures"] as? [String] ?? []).contains { $0.hasSuffix("ForSequenceClassification") }
        }

        /// A classifier's label count (`id2label`, else `num_labels`, else 2); nil for a language model.
        func labelCount() throws -> Int? {
            guard isClassifier else { return nil }
            if let names = object["id2label"] as? [String: Any] { return names.count }
            return try integer(["num_labels"], default: 2)
        }

        func padTokenID() throws -> Int32? {
            guard let value = object["pad_token_id"], !(value is NSNull) else { return nil }
            guard let number = value as? NSNumber, let id = Int32(exactly: number.doubleValue) else {
                throw HuggingFaceError(file: file, "key 'pad_token_id' is \(value), expected an integer")
            }
            return id
        }
    }

    private static func gpt2Config(_ keys: ConfigKeys) throws -> GPTConfig {
        let object = keys.object, file = keys.file
        if let activation = object["activation_function"] as? String, activation != "gelu_new" {
            throw HuggingFaceError(file: file, "activation_function is '\(activation)', expected 'gelu_new' (tanh GELU)")
        }
        if let inner = object["n_inner"], !(inner is NSNull) {
            let channels = try keys.integer(["n_embd"])
            guard let number = inner as? NSNumber, number.intValue == 4 * channels else {
                throw HuggingFaceError(file: file, "n_inner is \(inner), expected null or 4 × n_embd = \(4 * channels)")
            }
        }
        // Variants of GPT-2's attention and head that this model does not implement: refused, never ignored.
        if try keys.flag("tie_word_embeddings") == false && !keys.isClassifier {
            throw HuggingFaceError(
                file: file, "tie_word_embeddings is false: an untied language-model head (its own lm_head.weight) is not "
                    + "supported; Lockstep's GPT-2 ties the head to transformer.wte.weight")
        }
        if try keys.flag("scale_attn_by_inverse_layer_idx") == true {
            throw HuggingFaceError(
                file: file, "scale_attn_by_inverse_layer_idx is true: scaling attention by 1 / (layer + 1) is not supported")
        }
        if try keys.flag("scale_attn_weights") == false {
            throw HuggingFaceError(
                file: file, "scale_attn_weights is false: attention without the 1 / sqrt(head size) scale is not supported")
        }
        // reorder_and_upcast_attn only computes the same scaled attention in float32, which is what Lockstep does
        // anyway; it is accepted (checked only for its type).
        _ = try keys.flag("reorder_and_upcast_attn")

        let epsilon = try keys.number("layer_norm_epsilon").map(Float.init) ?? 1e-5
        return GPTConfig(
            vocabularySize: try keys.integer(["vocab_size"]), contextLength: try keys.integer(["n_positions", "n_ctx"]),
            layerCount: try keys.integer(["n_layer"]), headCount: try keys.integer(["n_head"]),
            channels: try keys.integer(["n_embd"]), layerNormEpsilon: epsilon, labelCount: try keys.labelCount(),
            padTokenID: try keys.padTokenID())
    }

    /// `LlamaConfig`: refuses what the Llama family here does not implement (biases, other activations, rope
    /// scaling, a head size other than hidden / heads).
    private static func llamaConfig(_ keys: ConfigKeys) throws -> GPTConfig {
        let object = keys.object, file = keys.file
        if let activation = object["hidden_act"] as? String, activation != "silu" {
            throw HuggingFaceError(file: file, "hidden_act is '\(activation)', expected 'silu'")
        }
        for key in ["attention_bias", "mlp_bias"] where try keys.flag(key) == true {
            throw HuggingFaceError(file: file, "\(key) is true: Llama with biases is not supported")
        }
        let channels = try keys.integer(["hidden_size"]), heads = try keys.integer(["num_attention_heads"])
        if let headDim = object["head_dim"], !(headDim is NSNull) {
            guard heads > 0, try keys.integer(["head_dim"]) * heads == channels else {
                throw HuggingFaceError(file: file, "head_dim is \(headDim), expected hidden_size / num_attention_heads")
            }
        }
        // Rotary settings: `rope_theta` at the top (transformers 4) or inside `rope_parameters` (transformers 5).
        let parameters = object["rope_parameters"] as? [String: Any]
        for table in [object["rope_scaling"], object["rope_parameters"]] {
            guard let table = table as? [String: Any] else { continue }
            let kind = (table["rope_type"] ?? table["type"]) as? String
            if let kind, kind != "default" {
                throw HuggingFaceError(file: file, "rope_type is '\(kind)', expected 'default' (rope scaling is not supported)")
            }
        }
        let theta = try keys.number("rope_theta") ?? keys.number("rope_theta", in: parameters) ?? 10_000
        return GPTConfig(
            family: .llama, vocabularySize: try keys.integer(["vocab_size"]),
            contextLength: try keys.integer(["max_position_embeddings"]), layerCount: try keys.integer(["num_hidden_layers"]),
            headCount: heads, channels: channels, layerNormEpsilon: try keys.number("rms_norm_eps").map(Float.init) ?? 1e-6,
            keyValueHeadCount: try keys.integer(["num_key_value_heads"], default: heads),
            intermediateSize: try keys.integer(["intermediate_size"]), ropeTheta: theta,
            tieEmbeddings: try keys.flag("tie_word_embeddings") ?? false, labelCount: try keys.labelCount(),
            padTokenID: try keys.padTokenID())
    }

    /// Label names from `id2label`, ordered by id; nil when the config has none.
    /// - Throws: `HuggingFaceError` when ids are not exactly 0..<count.
    public static func loadLabelNames(directory: URL) throws -> [String]? {
        let object = try readConfigObject(directory: directory)
        guard let table = object["id2label"] as? [String: Any] else { return nil }
        let file = directory.appendingPathComponent(configFile).path
        var names = [String?](repeating: nil, count: table.count)
        for (key, value) in table {
            guard let id = Int(key), names.indices.contains(id), let name = value as? String else {
                throw HuggingFaceError(file: file, "id2label entry '\(key)': \(value), expected ids 0..<\(table.count) mapped to strings")
            }
            names[id] = name
        }
        return names.map { $0! }
    }

    private static func readConfigObject(directory: URL) throws -> [String: Any] {
        let url = directory.appendingPathComponent(configFile)
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            throw HuggingFaceError(file: url.path, "cannot be read: \(error.localizedDescription)")
        }
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw HuggingFaceError(file: url.path, "is not a JSON object")
        }
        return object
    }

    // MARK: - model.safetensors

    /// Copies the weights of `directory/model.safetensors` into `model.parameters`. Names may carry the
    /// `transformer.` prefix or not; `lm_head.weight` (tied) and the attention-mask buffers (`attn.bias`,
    /// `attn.masked_bias`) are ignored. Any other tensor the model lacks is an error, as is a missing one.
    /// - Parameter requireScore: when false, a classifier may load a file without `score.weight` (fine-tuning
    ///   from a language model): its score head is left as it was.
    /// - Throws: `HuggingFaceError` naming the missing, unexpected or misshapen tensor; `SafeTensorsError`.
    public static func load(directory: URL, into model: GPT, requireScore: Bool = true) throws {
        let url = directory.appendingPathComponent(weightsFile)
        try loadParameters(from: SafeTensorsFile.read(url), into: model.parameters, layout: model.layout, requireScore: requireScore)
    }

    /// `load`'s work on an already read file, for any buffer in the layout (e.g. a checkpoint's parameters).
    public static func loadParameters(
        from file: SafeTensors, into buffer: UnsafeMutableBufferPointer<Float>, layout: ParameterLayout,
        requireScore: Bool = true
    ) throws {
        precondition(buffer.count == layout.count, "buffer does not match the layout")
        var found: Set<String> = []
        for tensor in file.tensors {
            var name = tensor.name
            if layout.tensor(named: name) == nil, layout.tensor(named: "transformer." + name) != nil {
                name = "transformer." + name
            }
            guard let target = layout.tensor(named: name) else {
                if isIgnorable(name) { continue }
                throw HuggingFaceError(file: file.file, "unexpected tensor '\(tensor.name)' \(tensor.shape): this model has no such parameter")
            }
            guard tensor.shape == target.shape else {
                throw HuggingFaceError(file: file.file, "tensor '\(tensor.name)' has shape \(tensor.shape), expected \(target.shape)")
            }
            guard found.insert(name).inserted else {
                throw HuggingFaceError(file: file.file, "tensor '\(name)' appears twice (with and without the 'transformer.' prefix)")
            }
            try file.copyFloats(named: tensor.name, into: UnsafeMutableBufferPointer(rebasing: buffer[target.range]))
        }
        for tensor in layout.tensors where !found.contains(tensor.name) {
            if tensor.name == "score.weight" && !requireScore { continue }
            throw HuggingFaceError(file: file.file, "missing tensor '\(tensor.name)' \(tensor.shape)")
        }
        // A language model with a tied head: a stored lm_head.weight must be a copy of the token table; an untied
        // head would be silently replaced. (A classifier has no language-model head: fine-tuning from a language
        // model drops it.)
        if layout.config.labelCount == nil, layout.config.tiesHead,
            let head = file.tensors.first(where: { $0.name == "lm_head.weight" }),
            let wte = layout.tensors.first(where: { $0.offset == layout.wte })
        {
            guard head.shape == wte.shape else {
                throw HuggingFaceError(
                    file: file.file, "tensor 'lm_head.weight' has shape \(head.shape), expected \(wte.shape) (tied to \(wte.name))")
            }
            var values = [Float](repeating: 0, count: wte.range.count)
            try values.withUnsafeMutableBufferPointer { try file.copyFloats(named: head.name, into: $0) }
            if !values.elementsEqual(buffer[wte.range]) {
                throw HuggingFaceError(
                    file: file.file, "lm_head.weight differs from \(wte.name): an untied language-model head "
                        + "is not supported by this model (config.json tie_word_embeddings: false)")
            }
        }
    }

    private static func isIgnorable(_ name: String) -> Bool {
        name == "lm_head.weight" || name.hasSuffix(".attn.bias") || name.hasSuffix(".attn.masked_bias")
            || name.hasSuffix(".rotary_emb.inv_freq")
    }

    /// Adds every tensor of `buffer` (laid out by `layout`) to `writer` as F32, each under `prefix + name`,
    /// borrowed: `buffer` must stay unchanged until the writer has written.
    public static func addTensors(
        from buffer: UnsafeBufferPointer<Float>, layout: ParameterLayout, to writer: inout SafeTensorsWriter,
        prefix: String = ""
    ) throws {
        precondition(buffer.count == layout.count, "buffer does not match the layout")
        for tensor in layout.tensors {
            try writer.add(prefix + tensor.name, borrowing: UnsafeBufferPointer(rebasing: buffer[tensor.range]), shape: tensor.shape)
        }
    }

    // MARK: - Saving

    /// Writes `config.json` and `model.safetensors` into `directory` (created if needed) so that
    /// `transformers` loads it as `GPT2LMHeadModel`, or `GPT2ForSequenceClassification` for a classifier.
    /// - Parameter extraConfig: keys merged into config.json last (e.g. `id2label` as `[String: String]`
    ///   keyed by id, `bos_token_id`); `label2id` is derived from `id2label` when not given.
    public static func save(model: GPT, directory: URL, extraConfig: [String: Any]? = nil) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var writer = SafeTensorsWriter()
        writer.metadata = ["format": "pt"]
        try addTensors(from: UnsafeBufferPointer(model.parameters), layout: model.layout, to: &writer)
        try writer.write(to: directory.appendingPathComponent(weightsFile))
        let json = try configJSON(model.config, extra: extraConfig ?? [:])
        try AtomicFile.write(json, to: directory.appendingPathComponent(configFile))
    }

    /// The config.json text for `config`.
    public static func configJSON(_ config: GPTConfig, extra: [String: Any] = [:]) throws -> Data {
        // Floats written through their shortest decimal so 1e-5 reads back as 1e-05, not 9.99999974737875e-06.
        let epsilon = Double("\(config.layerNormEpsilon)") ?? 1e-5
        var object: [String: Any]
        switch config.family {
        case .gpt2:
            object = [
                "model_type": "gpt2",
                "architectures": [config.labelCount == nil ? "GPT2LMHeadModel" : "GPT2ForSequenceClassification"],
                "activation_function": "gelu_new",
                "vocab_size": config.vocabularySize,
                "n_positions": config.contextLength,
                "n_embd": config.channels,
                "n_layer": config.layerCount,
                "n_head": config.headCount,
                "n_inner": NSNull(),
                "layer_norm_epsilon": epsilon,
                // This implementation trains without dropout.
                "attn_pdrop": 0.0, "embd_pdrop": 0.0, "resid_pdrop": 0.0,
                "scale_attn_weights": true,
                "scale_attn_by_inverse_layer_idx": false,
                "reorder_and_upcast_attn": false,
                "tie_word_embeddings": true,
            ]
        case .llama:
            object = [
                "model_type": "llama",
                "architectures": [config.labelCount == nil ? "LlamaForCausalLM" : "LlamaForSequenceClassification"],
                "hidden_act": "silu",
                "vocab_size": config.vocabularySize,
                "max_position_embeddings": config.contextLength,
                "hidden_size": config.channels,
                "num_hidden_layers": config.layerCount,
                "num_attention_heads": config.headCount,
                "num_key_value_heads": config.keyValueHeads,
                "head_dim": config.headSize,
                "intermediate_size": config.mlpWidth,
                "rms_norm_eps": epsilon,
                "rope_theta": config.ropeTheta,
                "rope_parameters": ["rope_type": "default", "rope_theta": config.ropeTheta] as [String: Any],
                "attention_bias": false, "mlp_bias": false, "attention_dropout": 0.0,
                "tie_word_embeddings": config.tiesHead,
            ]
        }
        object["initializer_range"] = 0.02
        object["use_cache"] = true
        object["dtype"] = "float32"
        if let padTokenID = config.padTokenID { object["pad_token_id"] = Int(padTokenID) }
        if let labelCount = config.labelCount {
            object["id2label"] = Dictionary(uniqueKeysWithValues: (0..<labelCount).map { ("\($0)", "LABEL_\($0)") })
        }
        for (key, value) in extra { object[key] = value }
        if extra["label2id"] == nil, let names = object["id2label"] as? [String: String] {
            var inverse: [String: Int] = [:]
            for (id, name) in names { inverse[name] = Int(id) }
            object["label2id"] = inverse
        }
        do {
            return try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
        } catch {
            throw HuggingFaceError(file: configFile, "extraConfig cannot be written as JSON: \(error)")
        }
    }
}
