import ArgumentParser
import Foundation
import LockstepTokenizer

/// `lockstep tokenizer-benchmark`: times training and batch encoding for scripts/benchmark_tokenizer.py.
/// Hidden: its output is one JSON object meant for that script.
struct TokenizerBenchmarkCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenizer-benchmark", abstract: "Time tokenizer training and encoding (for scripts).",
        shouldDisplay: false)

    @Option(help: "A UTF-8 text file; its lines (with their newlines) are the documents.")
    var input: String

    @Option(help: "Vocabulary size to train to.")
    var vocabSize: Int = 8192

    @Option(help: "Threads for counting words and for encoding.")
    var threads: Int = ProcessInfo.processInfo.activeProcessorCount

    @Option(help: "Repetitions of each measurement.")
    var repeats: Int = 3

    func validate() throws {
        if vocabSize < 257 || vocabSize > Int(Int32.max) { throw ValidationError("--vocab-size must be in 257...\(Int32.max), not \(vocabSize)") }
        if threads < 1 { throw ValidationError("--threads must be at least 1, not \(threads)") }
        if repeats < 1 { throw ValidationError("--repeats must be at least 1, not \(repeats)") }
    }

    func run() throws {
        let text = try String(contentsOf: URL(fileURLWithPath: input), encoding: .utf8)
        // Lines with their newlines (Python's splitlines(keepends=True) for \n-only text).
        let bytes = Array(text.utf8)
        var lines: [String] = []
        var lineStart = 0
        for (k, byte) in bytes.enumerated() where byte == 0x0A {
            lines.append(String(decoding: bytes[lineStart...k], as: UTF8.self))
            lineStart = k + 1
        }
        if lineStart < bytes.count { lines.append(String(decoding: bytes[lineStart...], as: UTF8.self)) }
        var trainSeconds: [Double] = []
        var encodeSeconds: [Double] = []
        var tokenizer = BPETokenizer.bytes()
        for _ in 0..<repeats {
            let start = Date()
            tokenizer = BPETokenizer.train(texts: lines, vocabularySize: vocabSize, threads: threads)
            trainSeconds.append(Date().timeIntervalSince(start))
        }
        var tokens = 0
        for _ in 0..<repeats {
            // A fresh copy each time, so every run starts with empty word caches, as Hugging Face's does.
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("lockstep-bench-\(UUID().uuidString)")
            try tokenizer.save(directory: directory)
            let fresh = try BPETokenizer.load(directory: directory)
            try? FileManager.default.removeItem(at: directory)
            let start = Date()
            let ids = fresh.encodeBatch(lines, threads: threads)
            encodeSeconds.append(Date().timeIntervalSince(start))
            tokens = ids.reduce(0) { $0 + $1.count }
        }
        let result: [String: Any] = [
            "bytes": text.utf8.count, "documents": lines.count, "tokens": tokens, "threads": threads,
            "vocab_size": tokenizer.vocabularySize, "train_seconds": trainSeconds, "encode_seconds": encodeSeconds,
        ]
        let json = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys])
        print(String(decoding: json, as: UTF8.self))
    }
}
