import Foundation
import Testing
import LockstepTestSupport
@testable import LockstepTokenizer

@Suite struct TrainingTests {
    static let text = """
        The quick brown fox jumps over the lazy dog. The dog sleeps; the fox runs away.
        Don't stop: we'll see the foxes' den, and they're there!  Numbers 123 4567 and 89.
        <|endoftext|>A second document, about the dog and the fox again — naïve café 🙂.
        """

    @Test func trainingIsDeterministicAndRoundTrips() throws {
        let documents = Self.text.components(separatedBy: "\n")
        let first = BPETokenizer.train(texts: documents, vocabularySize: 300)
        let second = BPETokenizer.train(texts: documents, vocabularySize: 300, threads: 1)
        #expect(first.vocabulary == second.vocabulary)
        #expect(first.merges == second.merges)
        #expect(first.vocabularySize == 300)
        #expect(first.endOfTextID == 0)
        #expect(first.token(for: 1) == "!")
        for document in documents { #expect(first.decode(first.encode(document)) == document) }
        #expect(first.encode(Self.text).count < Self.text.utf8.count * 3 / 5)
        #expect(first.encode("<|endoftext|>the").first == 0)
    }

    /// Counts by hand: words "ab" ×1, " ab" ×2, " abc" ×1 give pairs (a,b) 4, (Ġ,a) 3, (b,c) 1; after
    /// a+b: (Ġ,ab) 3, (ab,c) 1; after Ġ+ab: (Ġab,c) 1; then no pair is left, so training stops short of V.
    @Test func mergesFollowPairCounts() {
        let trained = BPETokenizer.train(texts: ["ab ab ab abc"], vocabularySize: 300, specialTokens: [])
        #expect(trained.merges == [BPEMerge("a", "b"), BPEMerge("Ġ", "ab"), BPEMerge("Ġab", "c")])
        #expect(trained.vocabularySize == 259)
        #expect(trained.endOfTextID == nil)
        #expect(trained.encode("ab abc") == [256, 258].map { Int32($0) })
    }

    /// Equal counts go to the smaller left id, then the smaller right id; byte ids follow code points, so
    /// x (U+0078) < z (U+007A) < Ġ (U+0120).
    @Test func tiesGoToTheSmallerIDs() {
        let trained = BPETokenizer.train(texts: ["xy zw"], vocabularySize: 300, specialTokens: [])
        #expect(trained.merges == [BPEMerge("x", "y"), BPEMerge("z", "w"), BPEMerge("Ġ", "zw")])
    }

    @Test func savedTrainedTokenizerLoadsWithTheSameMerges() throws {
        let trained = BPETokenizer.train(texts: [Self.text], vocabularySize: 320)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("lockstep-train-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        try trained.save(directory: directory)
        let loaded = try BPETokenizer.load(directory: directory)
        #expect(loaded.merges == trained.merges)
        #expect(loaded.vocabulary == trained.vocabulary)
        #expect(loaded.encode(Self.text) == trained.encode(Self.text))
    }

    /// Hugging Face trained the reference tokenizer on tinyshakespeare. Our id scheme and tie rule are the
    /// same as its BpeTrainer's, so all 767 merges and the whole vocabulary agree exactly.
    @Test(.requires(.shared(SharedFiles.data.appendingPathComponent("tinyshakespeare.txt")), .shared(SharedFiles.reference.appendingPathComponent("tokenizer")))) func tinyshakespeareMergesAgreeWithHuggingFace() throws {
        let corpus = SharedFiles.data.appendingPathComponent("tinyshakespeare.txt")
        let reference = SharedFiles.reference.appendingPathComponent("tokenizer")
        try TestEnvironment.require(.shared(corpus), .shared(reference))
        let expected = try BPETokenizer.load(directory: reference)
        let text = try String(contentsOf: corpus, encoding: .utf8)
        let trained = BPETokenizer.train(texts: [text], vocabularySize: 1024)
        let same = zip(trained.merges, expected.merges).prefix { $0.0 == $0.1 }.count
        print("tinyshakespeare: \(same) of \(expected.merges.count) merges agree with Hugging Face")
        #expect(trained.vocabularySize == 1024)
        #expect(same == expected.merges.count)
        #expect(trained.vocabulary == expected.vocabulary)

        // Reading the file in pieces (cut where the pattern always splits) gives the same tokenizer.
        let fromFile = try BPETokenizer.train(files: [corpus], vocabularySize: 1024)
        #expect(fromFile.merges == expected.merges)
    }

    @Test func invalidUTF8InACorpusFileIsAnErrorWithItsOffset() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("lockstep-bad-\(UUID().uuidString).txt")
        defer { try? FileManager.default.removeItem(at: file) }
        try Data([0x61, 0x62, 0x0A, 0x63, 0xFF, 0x64]).write(to: file)
        #expect(throws: TokenizerError.invalidFile(path: file.path, line: nil, reason: "invalid UTF-8 at byte offset 4")) {
            try BPETokenizer.train(files: [file], vocabularySize: 300)
        }
        let replaced = try BPETokenizer.train(files: [file], vocabularySize: 300, replacingInvalidUTF8: true)
        #expect(replaced.decode(replaced.encode("c\u{FFFD}d")) == "c\u{FFFD}d")
        let missing = file.appendingPathExtension("absent")
        #expect(throws: TokenizerError.missingFile(path: missing.path)) {
            try BPETokenizer.train(files: [missing], vocabularySize: 300)
        }
    }
}
