import LockstepConfig
import LockstepData
import LockstepKernels
import LockstepModel

/// What a replica learns, and from which data: next tokens over token windows (`LanguageModelTask`) or one
/// label per text (`ClassificationTask`). `WorkerReplica` owns everything else in a step: zeroing, gradient
/// accumulation, averaging over replicas, clipping and the optimizer update.
protocol ReplicaTask: AnyObject {
    /// Where the next global batch starts in the seeded data order; saved with checkpoints.
    var cursor: DataCursor { get set }
    /// Tokens one step processes on this replica (padding included), for throughput figures.
    var tokensPerStep: Int { get }
    /// Reads this replica's slice of the next global batch and advances the cursor past the whole batch.
    func loadNextBatch()
    /// Forward over micro-batch `index` of the loaded batch; returns its mean loss.
    func forward(microBatch index: Int) -> Float
    /// Backward of the last `forward`: adds `lossScale` × the gradient of its mean loss to the model's gradients,
    /// telling `events` as block gradients become final (so their averaging can start) and between kernels
    /// (so averaging in flight can progress).
    func backward(lossScale: Float, events: BackwardEvents)
    /// Evaluation over this replica's share of the validation set: item i belongs to replica i mod N.
    func evaluate(replicaIndex: Int, replicaCount: Int) -> TaskEvaluation
}

/// `training.dropout` on one replica: a fresh mask for every micro-batch of every step. Its seed mixes
/// `data.seed`, the cursor at which the step's global batch begins (saved with checkpoints, so a resumed run
/// draws the same masks), the replica and the micro-batch.
struct TrainingDropout {
    let base: Dropout.Draw
    let replicaIndex: Int

    /// Nil when the config trains without dropout.
    init?(_ config: RunConfig, replicaIndex: Int) {
        guard config.training.dropout > 0 else { return nil }
        base = Dropout.Draw(rate: Float(config.training.dropout), seed: config.data.seed)
        self.replicaIndex = replicaIndex
    }

    func draw(batchStart: DataCursor, microBatch: Int) -> Dropout.Draw {
        base.part(batchStart.epoch).part(batchStart.position).part(replicaIndex).part(microBatch)
    }
}

/// A replica's part of one evaluation.
struct TaskEvaluation {
    /// Loss summed over `count` items: tokens for a language model, examples for a classifier.
    var lossSum: Double
    var count: Int
    /// Classifier only: the class logits of this replica's examples, K per example, in the order
    /// `replicaIndex, replicaIndex + N, ...` of the dev set.
    var logits: [Float] = []
}

/// Pretraining: windows of T + 1 tokens from the shard stream, loss on every next token.
final class LanguageModelTask: ReplicaTask {
    let model: GPT
    let stream: PretrainingStream
    let validation: TokenWindowDataset?
    /// Validation windows per evaluation (0: all).
    let maxValidationWindows: Int
    let microBatch: Int
    let time: Int
    /// This replica's windows of one global batch: `(accumulation × microBatch, T)` each.
    let inputs: UnsafeMutableBufferPointer<Int32>
    let targets: UnsafeMutableBufferPointer<Int32>

    let dropout: TrainingDropout?
    /// Where the loaded batch began in the data order, for its dropout masks.
    private var batchStart = DataCursor(epoch: 0, position: 0)

    init(
        model: GPT, stream: PretrainingStream, validation: TokenWindowDataset?, maxValidationWindows: Int,
        dropout: TrainingDropout?
    ) {
        self.model = model
        self.dropout = dropout
        self.stream = stream
        self.validation = validation
        self.maxValidationWindows = maxValidationWindows
        microBatch = model.batchSize
        time = model.sequenceLength
        inputs = .allocate(capacity: stream.localBatchWindows * time)
        targets = .allocate(capacity: stream.localBatchWindows * time)
    }

    deinit {
        inputs.deallocate()
        targets.deallocate()
    }

    var cursor: DataCursor {
        get { stream.cursor }
        set { stream.cursor = newValue }
    }

    var tokensPerStep: Int { stream.localBatchWindows * time }

    func loadNextBatch() {
        batchStart = stream.cursor
        stream.nextBatch(inputs: inputs.baseAddress!, targets: targets.baseAddress!)
    }

    func forward(microBatch index: Int) -> Float {
        let offset = index * microBatch * time
        return model.forward(
            tokens: inputs.baseAddress! + offset, targets: targets.baseAddress! + offset, batch: microBatch,
            dropout: dropout?.draw(batchStart: batchStart, microBatch: index))
    }

    func backward(lossScale: Float, events: BackwardEvents) {
        model.backward(lossScale: lossScale, events: events)
    }

    func evaluate(replicaIndex: Int, replicaCount: Int) -> TaskEvaluation {
        guard let validation else { return TaskEvaluation(lossSum: 0, count: 0) }
        let limit = maxValidationWindows == 0 ? validation.windowCount : min(maxValidationWindows, validation.windowCount)
        let mine = Array(stride(from: replicaIndex, to: limit, by: replicaCount))
        let sums = ValidationLoss.sums(
            model: model, dataset: validation, windows: mine, batch: microBatch, sequenceLength: time,
            inputs: inputs.baseAddress!, targets: targets.baseAddress!)
        return TaskEvaluation(lossSum: sums.lossSum * Double(time), count: Int(sums.windows) * time)
    }
}
