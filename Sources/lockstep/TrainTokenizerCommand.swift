import ArgumentParser
import Foundation
import LockstepTokenizer

/// `lockstep train-tokenizer --input FILE... --vocab-size N --output DIR`: trains a byte-level BPE on plain
/// text files and writes vocab.json and merges.txt.
struct TrainTokenizerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train-tokenizer",
        abstract: "Train a byte-level BPE tokenizer on UTF-8 text files; write vocab.json and merges.txt.")

    @Option(name: .customLong("input"), parsing: .upToNextOption, help: "Plain UTF-8 text files.")
    var inputs: [String] = []

    @Option(help: "Target vocabulary size, including the special tokens and the 256 bytes.")
    var vocabSize: Int = 8192

    @Option(help: "Directory to write vocab.json and merges.txt into (created if absent).")
    var output: String

    @Option(name: .customLong("special-token"), help: "A special token (repeatable); ids 0, 1, ... in order.")
    var specialTokens: [String] = ["<|endoftext|>"]

    @Flag(help: "Write the plain byte vocabulary (ids 0-255 are bytes, specials after) instead of training.")
    var bytes = false

    @Option(help: "Threads for counting words (default: all cores).")
    var threads: Int?

    @Flag(help: "Read invalid UTF-8 as U+FFFD instead of stopping with an error.")
    var replaceInvalidUTF8 = false

    func validate() throws {
        if !bytes && inputs.isEmpty { throw ValidationError("give at least one --input file, or --bytes") }
        if !bytes && vocabSize < 256 + specialTokens.count {
            throw ValidationError("--vocab-size must be at least 256 + the number of special tokens (\(256 + specialTokens.count))")
        }
        if vocabSize > Int(Int32.max) { throw ValidationError("--vocab-size must be at most \(Int32.max), not \(vocabSize)") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1, not \(threads)") }
    }

    func run() throws {
        let start = Date()
        let tokenizer = bytes
            ? BPETokenizer.bytes(specialTokens: specialTokens)
            : try BPETokenizer.train(
                files: inputs.map { URL(fileURLWithPath: $0) }, vocabularySize: vocabSize,
                specialTokens: specialTokens, threads: threads, replacingInvalidUTF8: replaceInvalidUTF8)
        try tokenizer.save(directory: URL(fileURLWithPath: output))
        let seconds = String(format: "%.2f", Date().timeIntervalSince(start))
        print("wrote \(output)/vocab.json and merges.txt: \(tokenizer.vocabularySize) tokens, \(tokenizer.merges.count) merges (\(seconds) s)")
    }
}
