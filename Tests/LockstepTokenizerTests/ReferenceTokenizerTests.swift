import Foundation
import Testing
import LockstepTestSupport
@testable import LockstepTokenizer

/// The 1024-entry byte-level BPE that Hugging Face `tokenizers` trained on tinyshakespeare, and the ids it
/// gives for 222 texts (SST-2 and Shakespeare sentences, and edge cases of whitespace, contractions,
/// numbers, accents, CJK and emoji). Exact match required: no tolerance.
@Suite struct ReferenceTokenizerTests {
    static let directory = SharedFiles.reference.appendingPathComponent("tokenizer")

    struct Case: Decodable {
        var text: String
        var ids: [Int32]
    }

    static func cases() throws -> [Case] {
        let data = try Data(contentsOf: directory.appendingPathComponent("expected.jsonl"))
        return try data.split(separator: UInt8(ascii: "\n")).map { try JSONDecoder().decode(Case.self, from: Data($0)) }
    }

    @Test(.requires(.shared(Self.directory.appendingPathComponent("expected.jsonl")))) func everyExpectedLineMatchesHuggingFace() throws {
        try TestEnvironment.require(.shared(Self.directory.appendingPathComponent("expected.jsonl")))
        let tokenizer = try BPETokenizer.load(directory: Self.directory)
        let cases = try Self.cases()
        #expect(cases.count == 222)
        #expect(tokenizer.vocabularySize == 1024)
        #expect(tokenizer.endOfTextID == 0)
        for (line, item) in cases.enumerated() {
            #expect(tokenizer.encode(item.text) == item.ids, "expected.jsonl line \(line + 1): \(item.text.debugDescription)")
        }
        // The batch path, over several threads and with fresh caches, gives the same ids.
        let batch = tokenizer.encodeBatch(cases.map(\.text), threads: 3)
        #expect(batch == cases.map(\.ids))
    }

    @Test(.requires(.shared(Self.directory.appendingPathComponent("expected.jsonl")))) func decodeInvertsEncode() throws {
        try TestEnvironment.require(.shared(Self.directory.appendingPathComponent("expected.jsonl")))
        let tokenizer = try BPETokenizer.load(directory: Self.directory)
        for item in try Self.cases() {
            #expect(tokenizer.decode(item.ids) == item.text)
        }
    }

    @Test(.requires(.shared(Self.directory.appendingPathComponent("expected.jsonl")))) func savedFilesLoadToTheSameTokenizer() throws {
        try TestEnvironment.require(.shared(Self.directory.appendingPathComponent("expected.jsonl")))
        let tokenizer = try BPETokenizer.load(directory: Self.directory)
        let copy = FileManager.default.temporaryDirectory.appendingPathComponent("lockstep-tokenizer-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: copy) }
        try tokenizer.save(directory: copy)
        let reloaded = try BPETokenizer.load(directory: copy)
        #expect(reloaded.vocabulary == tokenizer.vocabulary)
        #expect(reloaded.merges == tokenizer.merges)
        for item in try Self.cases() {
            #expect(reloaded.encode(item.text) == item.ids)
        }
    }
}
