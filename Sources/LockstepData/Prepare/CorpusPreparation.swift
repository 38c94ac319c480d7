import Foundation
import LockstepTokenizer

/// `lockstep prepare`: corpus files -> tokenizer -> train and validation token shards (llm.c format).
///
/// Memory stays bounded: the corpus is read in chunks, a few per core are encoded at a time, and shards are
/// streamed to disk. Every document starts with the end-of-text token, as in llm.c's and GPT-2's data.
/// Chunks go to validation so that it holds `validationFraction` of the tokens, spread evenly over the corpus.
public struct CorpusPreparation {
    public enum TokenizerSource: Sendable {
        /// The plain byte vocabulary (256 + `<|endoftext|>`).
        case bytes
        /// A directory with `vocab.json` + `merges.txt`.
        case directory(URL)
        /// Train a byte-level BPE of this size on the first `sampleBytes` of the corpus.
        case train(vocabularySize: Int, sampleBytes: Int)
    }

    public var inputs: [URL]
    public var textField = "text"
    public var tokenizer: TokenizerSource = .bytes
    public var outputDirectory: URL
    public var shardTokens = 100_000_000
    public var validationFraction = 0.1
    public var chunkBytes = 1 << 16
    public var replaceInvalidUTF8 = false

    public init(inputs: [URL], outputDirectory: URL) {
        self.inputs = inputs
        self.outputDirectory = outputDirectory
    }

    public struct Summary: Sendable {
        public var trainTokens: Int
        public var validationTokens: Int
        public var documents: Int
        public var trainShards: [URL]
        public var validationShards: [URL]
        public var vocabularySize: Int
    }

    /// `progress(bytesRead, totalBytes)` is called after each batch of chunks.
    public func run(progress: (Int, Int) -> Void = { _, _ in }) throws -> Summary {
        try FileManager.default.createDirectory(at: outputDirectory, withIntermediateDirectories: true)
        let tokenizer = try makeTokenizer()
        try tokenizer.save(directory: outputDirectory)
        guard let endOfText = tokenizer.endOfTextID else {
            throw CorpusError(description: "the tokenizer has no <|endoftext|> token to separate documents")
        }
        let width: TokenWidth = tokenizer.vocabularySize > 65_535 ? .uint32 : .uint16
        let train = try TokenShardWriter(
            directory: outputDirectory, prefix: "train", tokensPerShard: shardTokens, width: width)
        let validation = try TokenShardWriter(
            directory: outputDirectory, prefix: "val", tokensPerShard: shardTokens, width: width)

        let reader = try CorpusReader(
            files: inputs, textField: textField, chunkBytes: chunkBytes, replaceInvalidUTF8: replaceInvalidUTF8)
        let totalBytes = CorpusReader.totalBytes(of: inputs)
        let batchSize = 4 * max(1, ProcessInfo.processInfo.activeProcessorCount)
        var trainTokens = 0
        var validationTokens = 0
        var documents = 0
        var batch: [TextChunk] = []
        func flush() throws {
            let encoded = tokenizer.encodeBatch(batch.map(\.text))
            for (chunk, ids) in zip(batch, encoded) {
                var tokens = ids
                if chunk.startsDocument {
                    tokens.insert(endOfText, at: 0)
                    documents += 1
                }
                let all = Double(trainTokens + validationTokens + tokens.count)
                if Double(validationTokens) + 0.5 * Double(tokens.count) < validationFraction * all {
                    try validation.write(tokens)
                    validationTokens += tokens.count
                } else {
                    try train.write(tokens)
                    trainTokens += tokens.count
                }
            }
            batch.removeAll(keepingCapacity: true)
            progress(reader.bytesRead, totalBytes)
        }
        while let chunk = reader.next() {
            batch.append(chunk)
            if batch.count == batchSize { try flush() }
        }
        if let error = reader.error { throw error }
        try flush()
        return Summary(
            trainTokens: trainTokens, validationTokens: validationTokens, documents: documents,
            trainShards: try train.finish(), validationShards: try validation.finish(),
            vocabularySize: tokenizer.vocabularySize)
    }

    func makeTokenizer() throws -> BPETokenizer {
        switch tokenizer {
        case .bytes:
            return BPETokenizer.bytes()
        case .directory(let directory):
            return try BPETokenizer.load(directory: directory)
        case .train(let vocabularySize, let sampleBytes):
            let reader = try CorpusReader(
                files: inputs, textField: textField, chunkBytes: chunkBytes, replaceInvalidUTF8: replaceInvalidUTF8)
            var sample: [String] = []
            while reader.bytesRead < sampleBytes, let chunk = reader.next() { sample.append(chunk.text) }
            if let error = reader.error { throw error }
            return BPETokenizer.train(texts: sample, vocabularySize: vocabularySize, specialTokens: ["<|endoftext|>"])
        }
    }
}
