import ArgumentParser
import Foundation
import LockstepTokenizer

/// `lockstep decode --tokenizer bytes|DIR`: JSON lines `{"ids": [...]}` on stdin -> `{"text": ...}` on stdout.
struct DecodeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "decode",
        abstract: "Decode JSON lines {\"ids\": [...]} from stdin to {\"text\": ...} lines on stdout.")

    @Option(help: "'bytes' or a directory holding vocab.json and merges.txt.")
    var tokenizer: String

    func run() throws {
        let bpe = try BPETokenizer.load(named: tokenizer)
        var reader = JSONLineReader()
        var output = StandardOutput()
        defer { output.flush() }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        while let (number, object) = reader.next() {
            guard let values = (object as? [String: Any])?["ids"] as? [Any] else {
                throw JSONLineError(line: number, expected: "a JSON object with an array field \"ids\"")
            }
            var ids: [Int32] = []
            ids.reserveCapacity(values.count)
            for value in values {
                guard let number32 = (value as? NSNumber).flatMap({ Int32(exactly: $0.doubleValue) }),
                      number32 >= 0, Int(number32) < bpe.vocabularySize
                else {
                    throw JSONLineError(line: number, expected: "ids that are integers in 0..<\(bpe.vocabularySize), found \(value)")
                }
                ids.append(number32)
            }
            let json = try encoder.encode(["text": bpe.decode(ids)])
            output.write(String(decoding: json, as: UTF8.self) + "\n")
        }
        if let error = reader.error { throw error }
    }
}
