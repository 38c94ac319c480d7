/// One worker's view of the global stream of labeled examples, for fine-tuning a classifier.
///
/// The same rules as `PretrainingStream`: the epoch's order is a seeded permutation of all examples (a function
/// of seed and epoch only; file order without shuffling), each step consumes G examples, worker r of N reads
/// positions `[p + r·G/N, p + (r+1)·G/N)`, and the cursor advances by G. A batch never straddles epochs: when
/// fewer than G examples remain they are skipped and the cursor moves to (epoch + 1, 0).
///
/// Texts are tokenized as they are read, and only this worker's slice, with the given closure (the model's
/// tokenizer); tokens beyond T are cut off (the start of the text is kept) and the rest of the row is padded.
public final class LabeledBatchStream {
    public let examples: [LabeledExample]
    /// T: tokens per row.
    public let sequenceLength: Int
    /// The id filling each row after its tokens.
    public let padID: Int32
    public let seed: UInt64
    public let shuffle: Bool
    /// The next global batch. Setting it (to restore a checkpoint) moves the stream there directly.
    public var cursor: DataCursor {
        didSet { cursor = batching.normalized(cursor) }
    }

    private let tokenize: (String) -> [Int32]
    private let batching: GlobalBatching
    private let order: GlobalOrder

    /// G: examples per step over all workers.
    public var globalBatchSize: Int { batching.globalBatch }
    /// G / N: examples this worker reads per step.
    public var localBatchSize: Int { batching.localBatch }
    public var rank: Int { batching.rank }
    public var worldSize: Int { batching.worldSize }

    /// - Throws: `DataError.invalidArgument` when T is not positive, G is not a positive multiple of N, the rank is
    ///   outside 0..<N, there are fewer than G examples, or the cursor is negative.
    public init(
        examples: [LabeledExample], sequenceLength: Int, padID: Int32, globalBatchSize: Int, seed: UInt64,
        shuffle: Bool, rank: Int, worldSize: Int, cursor: DataCursor = .init(epoch: 0, position: 0),
        tokenize: @escaping (String) -> [Int32]
    ) throws {
        guard sequenceLength > 0 else {
            throw DataError.invalidArgument("sequence length must be positive, got \(sequenceLength)")
        }
        batching = try GlobalBatching(
            globalBatch: globalBatchSize, rank: rank, worldSize: worldSize, total: examples.count, items: "examples")
        try batching.check(cursor)
        self.examples = examples
        self.sequenceLength = sequenceLength
        self.padID = padID
        self.seed = seed
        self.shuffle = shuffle
        self.tokenize = tokenize
        self.order = GlobalOrder(blockCounts: [examples.count], seed: seed, shuffle: shuffle)
        self.cursor = batching.normalized(cursor)
    }

    /// Fills this worker's slice of the next global batch and advances the cursor by the whole global batch.
    /// - Parameters:
    ///   - tokens: (localBatchSize, T): each example's first min(n, T) token ids, then `padID`.
    ///   - lengths: (localBatchSize): max(1, min(n, T)), the tokens the classifier reads per row.
    ///   - labels: (localBatchSize): class ids.
    public func nextBatch(
        tokens: UnsafeMutablePointer<Int32>, lengths: UnsafeMutablePointer<Int32>, labels: UnsafeMutablePointer<Int32>
    ) {
        let first = batching.firstPosition(cursor)
        for b in 0..<localBatchSize {
            let example = examples[order.item(at: first &+ b, epoch: cursor.epoch)]
            lengths[b] = Self.encode(
                example.text, tokenize: tokenize, sequenceLength: sequenceLength, padID: padID,
                into: tokens + b &* sequenceLength)
            labels[b] = example.label
        }
        cursor.position += globalBatchSize
    }

    /// The index into `examples` at `position` of `epoch`'s order: for inspection and tests.
    public func exampleIndex(atPosition position: Int, epoch: Int) -> Int {
        order.item(at: position, epoch: epoch)
    }

    /// The text a classifier reads: `text` itself, or with `echo` the text twice, joined by a space unless it
    /// already ends in whitespace (`classification.echo`: the second copy's tokens have seen the whole text).
    public static func classifierText(_ text: String, echo: Bool) -> String {
        guard echo else { return text }
        return text + (text.last?.isWhitespace == false ? " " : "") + text
    }

    /// Tokenizes `text` into one row of T ids, truncated and right-padded; also for evaluation code that walks
    /// a whole dev set without dropping a last partial batch.
    /// An empty text (no tokens) reads as one pad token, so that every row has a last token to classify.
    /// - Returns: the tokens the classifier reads, max(1, min(n, T)).
    public static func encode(
        _ text: String, tokenize: (String) -> [Int32], sequenceLength: Int, padID: Int32,
        into row: UnsafeMutablePointer<Int32>
    ) -> Int32 {
        encode(ids: tokenize(text), sequenceLength: sequenceLength, padID: padID, into: row)
    }

    /// One row of T ids from a text's tokens, truncated and right-padded, as `encode(_:tokenize:...)`.
    public static func encode(
        ids: [Int32], sequenceLength: Int, padID: Int32, into row: UnsafeMutablePointer<Int32>
    ) -> Int32 {
        let length = min(ids.count, sequenceLength)
        for t in 0..<length { row[t] = ids[t] }
        for t in length..<sequenceLength { row[t] = padID }
        return Int32(max(length, 1))
    }
}
