import Foundation
import LockstepData
import LockstepModel
import LockstepTokenizer
import LockstepConfig

/// The parts of `RunSetup` that only fine-tuning needs.
extension RunSetup {
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
        let training = try config.labeledSet(pattern: config.data.train, labels: settings.labels.map(LabelMap.init(names:)))
        let dev = try config.data.validation.map {
            try config.labeledSet(pattern: $0, labels: training.labels)
        }
        model.classWeights = try classWeights(settings.classWeights, training: training)
        let echo = settings.echo
        let tokenize: (String) -> [Int32] = { tokenizer.encode(LabeledBatchStream.classifierText($0, echo: echo)) }
        let stream = try LabeledBatchStream(
            examples: training.examples, sequenceLength: config.training.sequenceLength, padID: tokenizer.padID,
            globalBatchSize: config.globalBatchWindows, seed: config.data.seed, shuffle: config.data.shuffle,
            rank: group.replicaIndex, worldSize: group.replicaCount, tokenize: tokenize)
        return ClassificationTask(
            model: model, stream: stream, dev: dev?.examples ?? [], headOnly: settings.freezeBackbone,
            dropout: TrainingDropout(config, replicaIndex: group.replicaIndex), tokenize: tokenize)
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
            if tensor.role == .embedding { return Float(pow(decay, Double(layers + 1))) }
            return 1
        }
    }
}
