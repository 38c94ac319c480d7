import Foundation
import Testing
import LockstepTestSupport
@testable import LockstepTokenizer

/// `lockstep encode` and `lockstep decode` end to end, with the byte vocabulary saved to a temporary folder.
/// `swift test` builds the `lockstep` executable beside the tests; a missing one is a failure.
@Suite struct CommandLineTests {
    static let binary = MPIRun.productsDirectory.appendingPathComponent("lockstep")

    func run(_ arguments: [String], input: String) throws -> (status: Int32, output: String, error: String) {
        let process = Process()
        process.executableURL = Self.binary
        process.arguments = arguments
        let stdin = Pipe(), stdout = Pipe(), stderr = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = stderr
        try process.run()
        stdin.fileHandleForWriting.write(Data(input.utf8))
        try stdin.fileHandleForWriting.close()
        let output = stdout.fileHandleForReading.readDataToEndOfFile()
        let error = stderr.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: output, as: UTF8.self), String(decoding: error, as: UTF8.self))
    }

    @Test func encodeThenDecodeRoundTrips() throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.binary.path), "\(Self.binary.path) is not built")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("lockstep-cli-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        try BPETokenizer.bytes().save(directory: directory)

        let encoded = try run(["encode", "--tokenizer", directory.path], input: "{\"text\": \"Hi 🙂\"}\n{\"text\": \"a<|endoftext|>\"}\n")
        #expect(encoded.status == 0)
        #expect(encoded.output == "{\"ids\": [72, 105, 32, 240, 159, 153, 130]}\n{\"ids\": [97, 256]}\n")

        let decoded = try run(["decode", "--tokenizer", directory.path], input: encoded.output)
        #expect(decoded.status == 0)
        #expect(decoded.output == "{\"text\":\"Hi 🙂\"}\n{\"text\":\"a<|endoftext|>\"}\n")
    }

    @Test func badLinesNameTheLineAndFail() throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.binary.path), "\(Self.binary.path) is not built")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("lockstep-cli-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        try BPETokenizer.bytes().save(directory: directory)

        let encoded = try run(["encode", "--tokenizer", directory.path], input: "{\"text\": \"ok\"}\n{\"txt\": 1}\n")
        #expect(encoded.status != 0)
        #expect(encoded.output == "{\"ids\": [111, 107]}\n")
        #expect(encoded.error.contains("stdin line 2: expected a JSON object with a string field \"text\""))

        let decoded = try run(["decode", "--tokenizer", directory.path], input: "{\"ids\": [1]}\nnot json\n")
        #expect(decoded.status != 0)
        #expect(decoded.error.contains("stdin line 2: expected one JSON value per line"))

        let outOfRange = try run(["decode", "--tokenizer", directory.path], input: "{\"ids\": [257]}\n")
        #expect(outOfRange.status != 0)
        #expect(outOfRange.error.contains("stdin line 1: expected ids that are integers in 0..<257, found 257"))
    }

    /// Issue 16: `decode --tokenizer bytes` looked for `bytes/vocab.json`; encode and decode take `bytes` like
    /// every other command (and a directory named `bytes` is still no substitute for the word).
    @Test func encodeAndDecodeAcceptBytes() throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.binary.path), "\(Self.binary.path) is not built")
        let encoded = try run(["encode", "--tokenizer", "bytes"], input: "{\"text\": \"ok<|endoftext|>\"}\n")
        #expect(encoded.status == 0, "\(encoded.error)")
        #expect(encoded.output == "{\"ids\": [111, 107, 256]}\n")
        let decoded = try run(["decode", "--tokenizer", "bytes"], input: "{\"ids\": [111, 107, 256]}\n")
        #expect(decoded.status == 0, "\(decoded.error)")
        #expect(decoded.output == "{\"text\":\"ok<|endoftext|>\"}\n")
        let missing = try run(["decode", "--tokenizer", "/nonexistent/tokenizer"], input: "{\"ids\": [1]}\n")
        #expect(missing.status != 0)
        #expect(missing.error.contains("/nonexistent/tokenizer"), "\(missing.error)")
    }
}
