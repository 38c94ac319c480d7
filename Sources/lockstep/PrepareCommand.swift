import ArgumentParser
import Foundation
import LockstepTraining
import LockstepData

/// `lockstep prepare`: corpus files -> tokenizer -> llm.c token shards (`train_*.bin`, `val_*.bin`) plus the
/// tokenizer's `vocab.json` + `merges.txt`, all in one output directory that a config's `data` section names.
struct PrepareCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prepare", abstract: "Tokenize a corpus into train and validation token shards.")

    @Option(name: .customLong("input"), help: "A text or JSONL file, or a directory of them (repeatable).")
    var inputs: [String]

    @Option(help: "Output directory for shards and tokenizer files.")
    var output: String

    @Option(help: "Use this tokenizer directory (vocab.json + merges.txt).")
    var tokenizer: String?

    @Option(help: "Train a byte-level BPE with this many entries on the corpus.")
    var vocabSize: Int?

    @Option(help: "Bytes of the corpus to train the tokenizer on.")
    var tokenizerSampleBytes: Int = 256 << 20

    @Option(help: "The text field of JSONL inputs.")
    var textField: String = "text"

    @Option(help: "Tokens per shard file.")
    var shardTokens: Int = 100_000_000

    @Option(help: "Fraction of tokens that go to validation.")
    var validationFraction: Double = 0.1

    @Flag(help: "Replace invalid UTF-8 with U+FFFD instead of stopping.")
    var replaceInvalidUTF8 = false

    func validate() throws {
        if tokenizer != nil && vocabSize != nil { throw ValidationError("give --tokenizer or --vocab-size, not both") }
        if let vocabSize, vocabSize < 257 { throw ValidationError("--vocab-size must be at least 257 (256 bytes + <|endoftext|>)") }
        if !(0..<1).contains(validationFraction) { throw ValidationError("--validation-fraction must be in [0, 1)") }
        if shardTokens < 1 { throw ValidationError("--shard-tokens must be positive") }
        if let vocabSize, vocabSize > Int(Int32.max) { throw ValidationError("--vocab-size must be at most \(Int32.max)") }
        if tokenizerSampleBytes < 1 { throw ValidationError("--tokenizer-sample-bytes must be positive") }
    }

    func run() throws {
        var preparation = CorpusPreparation(
            inputs: try CorpusReader.expand(paths: inputs), outputDirectory: URL(fileURLWithPath: output))
        preparation.textField = textField
        preparation.shardTokens = shardTokens
        preparation.validationFraction = validationFraction
        preparation.replaceInvalidUTF8 = replaceInvalidUTF8
        if let tokenizer {
            preparation.tokenizer = .directory(URL(fileURLWithPath: tokenizer))
        } else if let vocabSize {
            preparation.tokenizer = .train(vocabularySize: vocabSize, sampleBytes: tokenizerSampleBytes)
        }
        let summary = try preparation.run { done, total in
            let line = String(format: "\rprepare: %.1f / %.1f MB", Double(done) / 1e6, Double(total) / 1e6)
            FileHandle.standardError.write(Data(line.utf8))
        }
        FileHandle.standardError.write(Data("\n".utf8))
        print(
            "prepared \(summary.documents) documents: \(summary.trainTokens) train tokens in \(summary.trainShards.count) "
                + "shards, \(summary.validationTokens) validation tokens in \(summary.validationShards.count); "
                + "vocabulary \(summary.vocabularySize); written to \(output)")
    }
}
