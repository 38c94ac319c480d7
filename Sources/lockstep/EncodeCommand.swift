import ArgumentParser
import Foundation
import LockstepTokenizer

/// `lockstep encode --tokenizer bytes|DIR`: JSON lines `{"text": ...}` on stdin -> `{"ids": [...]}` on stdout.
struct EncodeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "encode",
        abstract: "Encode JSON lines {\"text\": ...} from stdin to {\"ids\": [...]} lines on stdout.")

    @Option(help: "'bytes' or a directory holding vocab.json and merges.txt.")
    var tokenizer: String

    func run() throws {
        let bpe = try BPETokenizer.load(named: tokenizer)
        var reader = JSONLineReader()
        var output = StandardOutput()
        // Lines are encoded in batches over the cores; a bad line stops after the lines before it are written.
        while true {
            var texts: [String] = []
            var failure: Error?
            while texts.count < 4096, let (number, object) = reader.next() {
                guard let text = (object as? [String: Any])?["text"] as? String else {
                    failure = JSONLineError(line: number, expected: "a JSON object with a string field \"text\"")
                    break
                }
                texts.append(text)
            }
            if let error = reader.error { failure = failure ?? error }
            for ids in bpe.encodeBatch(texts) {
                output.write("{\"ids\": [" + ids.map(String.init).joined(separator: ", ") + "]}\n")
            }
            output.flush()
            if let failure { throw failure }
            if texts.isEmpty { return }
        }
    }
}

/// A bad line of JSON-lines input; the message names the line (1-based).
struct JSONLineError: Error, CustomStringConvertible {
    var line: Int
    var expected: String
    var description: String { "stdin line \(line): expected \(expected)" }
}

/// JSON values from stdin, one per line. `error` is set, and `next()` returns nil, at the first line that
/// is not JSON.
struct JSONLineReader {
    private(set) var lineNumber = 0
    private(set) var error: JSONLineError?

    mutating func next() -> (Int, Any)? {
        guard error == nil, let line = readLine(strippingNewline: true) else { return nil }
        lineNumber += 1
        guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8), options: [.fragmentsAllowed]) else {
            error = JSONLineError(line: lineNumber, expected: "one JSON value per line")
            return nil
        }
        return (lineNumber, object)
    }
}

/// Buffered writes to stdout.
struct StandardOutput {
    private var buffer: [UInt8] = []

    mutating func write(_ text: String) {
        buffer.append(contentsOf: text.utf8)
        if buffer.count >= 1 << 16 { flush() }
    }

    mutating func flush() {
        FileHandle.standardOutput.write(Data(buffer))
        buffer.removeAll(keepingCapacity: true)
    }
}
