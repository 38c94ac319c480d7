import LockstepData
import LockstepKernels
import LockstepModel

/// Fine-tuning a classifier: rows of T tokens (truncated, right-padded) with one label each, loss on the
/// label logits read at each row's last real token. With a frozen backbone, backward stops at the head.
final class ClassificationTask: ReplicaTask {
    let model: GPT
    let stream: LabeledBatchStream
    /// The whole dev set; this replica evaluates every N-th example.
    let dev: [LabeledExample]
    let headOnly: Bool
    let tokenize: (String) -> [Int32]
    let microBatch: Int
    let time: Int
    /// This replica's rows of one global batch: tokens `(accumulation × microBatch, T)`, lengths and labels
    /// `(accumulation × microBatch)`.
    let tokens: UnsafeMutableBufferPointer<Int32>
    let lengths: UnsafeMutableBufferPointer<Int32>
    let labels: UnsafeMutableBufferPointer<Int32>
    let dropout: TrainingDropout?
    /// Where the loaded batch began in the data order, for its dropout masks.
    private var batchStart = DataCursor(epoch: 0, position: 0)

    init(
        model: GPT, stream: LabeledBatchStream, dev: [LabeledExample], headOnly: Bool, dropout: TrainingDropout?,
        tokenize: @escaping (String) -> [Int32]
    ) {
        self.model = model
        self.dropout = dropout
        self.stream = stream
        self.dev = dev
        self.headOnly = headOnly
        self.tokenize = tokenize
        microBatch = model.batchSize
        time = model.sequenceLength
        tokens = .allocate(capacity: stream.localBatchSize * time)
        lengths = .allocate(capacity: stream.localBatchSize)
        labels = .allocate(capacity: stream.localBatchSize)
    }

    deinit {
        tokens.deallocate()
        lengths.deallocate()
        labels.deallocate()
    }

    var cursor: DataCursor {
        get { stream.cursor }
        set { stream.cursor = newValue }
    }

    var tokensPerStep: Int { stream.localBatchSize * time }

    /// Reads this replica's rows, then orders them by length: each micro-batch is cut to its longest row
    /// (`compact`), so with several micro-batches per step, grouping similar lengths skips most of the padding
    /// (a random draw of short SST-2 phrases pads to about 3 times its tokens). The step's gradient is the sum
    /// over all its rows, so only the order of that sum changes.
    func loadNextBatch() {
        batchStart = stream.cursor
        stream.nextBatch(tokens: tokens.baseAddress!, lengths: lengths.baseAddress!, labels: labels.baseAddress!)
        let rows = stream.localBatchSize
        let order = (0..<rows).sorted { (lengths[$0], $0) < (lengths[$1], $1) }
        let oldTokens = Array(tokens), oldLengths = Array(lengths), oldLabels = Array(labels)
        for (row, source) in order.enumerated() {
            lengths[row] = oldLengths[source]
            labels[row] = oldLabels[source]
            for t in 0..<time { tokens[row &* time &+ t] = oldTokens[source &* time &+ t] }
        }
    }

    func forward(microBatch index: Int) -> Float {
        let row = index * microBatch
        let rows = tokens.baseAddress! + row * time
        let shortTime = compact(rows, lengths: lengths.baseAddress! + row, count: microBatch)
        return model.classify(
            tokens: rows, lengths: lengths.baseAddress! + row, labels: labels.baseAddress! + row, batch: microBatch,
            time: shortTime, dropout: dropout?.draw(batchStart: batchStart, microBatch: index))
    }

    func backward(lossScale: Float, events: BackwardEvents) {
        model.backwardClassification(lossScale: lossScale, headOnly: headOnly, events: events)
    }

    /// Cuts `count` rows of T tokens at `rows` to the longest row's length t, in place, so they are
    /// `(count, t)`: most texts are far shorter than T, and the classifier's logits do not depend on padding.
    /// Returns t.
    private func compact(_ rows: UnsafeMutablePointer<Int32>, lengths: UnsafePointer<Int32>, count: Int) -> Int {
        var longest = 1
        for b in 0..<count { longest = max(longest, Int(lengths[b])) }
        // Row b moves from b·T down to b·t ≤ b·T, so copying rows in order never overwrites one not yet moved.
        if longest < time {
            for b in 1..<max(count, 1) {
                (rows + b &* longest).update(from: rows + b &* time, count: longest)
            }
        }
        return longest
    }

    /// Loss and logits of dev examples `replicaIndex, replicaIndex + N, ...`, in micro-batches (the last one
    /// partial) of similar lengths, as in training, reusing the training buffers' first rows.
    func evaluate(replicaIndex: Int, replicaCount: Int) -> TaskEvaluation {
        let mine = Array(stride(from: replicaIndex, to: dev.count, by: replicaCount))
        let ids = mine.map { tokenize(dev[$0].text) }
        let order = mine.indices.sorted { (ids[$0].count, $0) < (ids[$1].count, $1) }
        let classes = model.config.labelCount!
        var result = TaskEvaluation(lossSum: 0, count: mine.count)
        result.logits = [Float](repeating: 0, count: mine.count * classes)
        var start = 0
        while start < mine.count {
            let rows = min(microBatch, mine.count - start)
            for b in 0..<rows {
                let slot = order[start + b]
                lengths[b] = LabeledBatchStream.encode(
                    ids: ids[slot], sequenceLength: time, padID: stream.padID, into: tokens.baseAddress! + b * time)
                labels[b] = dev[mine[slot]].label
            }
            let shortTime = compact(tokens.baseAddress!, lengths: lengths.baseAddress!, count: rows)
            let loss = model.classify(
                tokens: tokens.baseAddress!, lengths: lengths.baseAddress!, labels: labels.baseAddress!, batch: rows,
                time: shortTime)
            result.lossSum += Double(loss) * Double(rows)
            for b in 0..<rows {
                let slot = order[start + b]
                for k in 0..<classes { result.logits[slot * classes + k] = model.classLogits[b * classes + k] }
            }
            start += rows
        }
        return result
    }
}
