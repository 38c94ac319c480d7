import Foundation
import LockstepData
import LockstepModel
import LockstepTokenizer

/// The parts of `RunSetup` that only fine-tuning needs.
extension RunSetup {
    /// The id that fills a classifier row after its tokens: `<|endoftext|>` when the tokenizer has it (GPT-2
    /// fine-tuning conventionally pads with it), else 0. The classifier reads each row's last real token, so
    /// the pad id never changes a prediction; it is saved as `pad_token_id` for `transformers`.
    public static func padID(_ tokenizer: some Tokenizer) -> Int32 {
        tokenizer.endOfTextID ?? 0
    }

    /// Label names in id order: `classification.labels`, else the sorted distinct labels of `data.train`.
    public static func labels(_ config: RunConfig) throws -> LabelMap {
        if let names = config.classification?.labels { return LabelMap(names: names) }
        return try labeledSet(pattern: config.data.train, config: config, labels: nil).labels
    }

    /// The labeled files matching `pattern`, read with the `classification` section's settings. With
    /// `labels`, a label outside them is an error naming the file and line.
    public static func labeledSet(pattern: String, config: RunConfig, labels: LabelMap?) throws -> LabeledDataset {
        guard let settings = config.classification else {
            preconditionFailure("labeledSet needs task: classification")
        }
        let files = try TokenWindowDataset.files(matching: pattern)
        return try LabeledDataset.load(files: files, options: settings.fileOptions(for: files[0]), labels: labels)
    }

    /// Cross-entropy weights per label id from `classification.class_weights`; nil for none. `balanced` gives
    /// n / (K · n_k) as scikit-learn does (a label absent from the training set gets weight 1).
    static func classWeights(_ setting: RunConfig.ClassWeights, training: LabeledDataset) throws -> [Float]? {
        let classes = training.labels.names.count
        switch setting {
        case .none:
            return nil
        case .explicit(let weights):
            guard weights.count == classes else {
                throw ConfigError(
                    file: "<config>", key: "classification.class_weights",
                    message: "has \(weights.count) weights for \(classes) labels (\(training.labels.names.joined(separator: ", ")))")
            }
            return weights.map(Float.init)
        case .balanced:
            var counts = [Int](repeating: 0, count: classes)
            for example in training.examples { counts[Int(example.label)] += 1 }
            let total = Double(training.examples.count)
            return counts.map { $0 == 0 ? 1 : Float(total / (Double(classes) * Double($0))) }
        }
    }

    /// The fine-tuning task of one replica: its slice of the training examples, the dev set, class weights
    /// set on `model`, and a head-only backward when the backbone is frozen.
    static func classificationTask(_ config: RunConfig, model: GPT, group: ReplicaGroup) throws -> ClassificationTask {
        let settings = config.classification!
        let tokenizer = try tokenizer(config)
        // Read once: with no `classification.labels`, the file's own sorted labels are the map (as `labels`).
        let training = try labeledSet(
            pattern: config.data.train, config: config, labels: settings.labels.map(LabelMap.init(names:)))
        let dev = try config.data.validation.map {
            try labeledSet(pattern: $0, config: config, labels: training.labels)
        }
        model.classWeights = try classWeights(settings.classWeights, training: training)
        let tokenize: (String) -> [Int32] = { tokenizer.encode($0) }
        let stream = try LabeledBatchStream(
            examples: training.examples, sequenceLength: config.training.sequenceLength, padID: padID(tokenizer),
            globalBatchSize: config.globalBatchWindows, seed: config.data.seed, shuffle: config.data.shuffle,
            rank: group.replicaIndex, worldSize: group.replicaCount, tokenize: tokenize)
        return ClassificationTask(
            model: model, stream: stream, dev: dev?.examples ?? [], headOnly: settings.freezeBackbone, tokenize: tokenize)
    }

    /// Each tensor's learning rate relative to the schedule's: 1 for pretraining. For fine-tuning, the head
    /// gets `head_learning_rate / learning_rate`; with a frozen backbone every other tensor gets 0 (untouched);
    /// otherwise block i of L gets `layer_decay^(L − i)`, the embeddings `layer_decay^(L + 1)` and `ln_f` 1.
    static func learningRateScale(_ config: RunConfig, layout: ParameterLayout) -> (ParameterTensor) -> Float {
        guard let settings = config.classification else { return { _ in 1 } }
        let peak = config.schedule.peak
        let head = Float(peak > 0 ? (settings.headLearningRate ?? peak) / peak : 1)
        let layers = layout.config.layerCount
        let blocks = (0..<layers).map { layout.blockRange($0) }
        let decay = settings.layerDecay
        return { tensor in
            if tensor.offset == layout.score { return head }
            if settings.freezeBackbone { return 0 }
            if let block = blocks.firstIndex(where: { $0.contains(tensor.offset) }) {
                return Float(pow(decay, Double(layers - block)))
            }
            if tensor.offset == layout.wte || tensor.offset == layout.wpe { return Float(pow(decay, Double(layers + 1))) }
            return 1
        }
    }
}
