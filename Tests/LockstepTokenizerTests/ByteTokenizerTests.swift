import Foundation
import Testing
import LockstepTestSupport
@testable import LockstepTokenizer

@Suite struct ByteTokenizerTests {
    @Test func idsAreByteValues() {
        let tokenizer = BPETokenizer.bytes()
        #expect(tokenizer.vocabularySize == 257)
        #expect(tokenizer.endOfTextID == 256)
        #expect(tokenizer.encode("Hi\n") == [72, 105, 10])
        #expect(tokenizer.encode("a<|endoftext|>b") == [97, 256, 98])
        let text = "emoji 🙂🚀, accents café, CJK 中文, tabs\t and  spaces "
        let ids = tokenizer.encode(text)
        #expect(ids == Array(text.utf8).map { Int32($0) })
        #expect(tokenizer.decode(ids) == text)
    }

    @Test func savesAndLoadsThroughTheSameFiles() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("lockstep-bytes-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        try BPETokenizer.bytes().save(directory: directory)
        let merges = try String(contentsOf: directory.appendingPathComponent("merges.txt"), encoding: .utf8)
        #expect(merges == "#version: 0.2\n")
        let loaded = try BPETokenizer.load(directory: directory)
        #expect(loaded.vocabularySize == 257)
        #expect(loaded.endOfTextID == 256)
        #expect(loaded.token(for: 32) == "Ġ")
        #expect(loaded.token(for: 256) == "<|endoftext|>")
        let text = "round trip 🙂 ✓"
        #expect(loaded.encode(text) == Array(text.utf8).map { Int32($0) })
        #expect(loaded.decode(loaded.encode(text)) == text)
    }

    @Test func invalidUTF8AndUnknownIDsDecodeToReplacementCharacters() {
        let tokenizer = BPETokenizer.bytes()
        #expect(tokenizer.decode([0xF0, 0x9F, 97]) == "\u{FFFD}a")  // a cut-off emoji, then "a"
        #expect(tokenizer.decode([104, 999, -1, 105]) == "h\u{FFFD}\u{FFFD}i")
    }

    @Test func batchEncodingEqualsOneByOne() {
        let tokenizer = BPETokenizer.train(texts: ["the cat sat on the mat with the hat"], vocabularySize: 280)
        let texts = (0..<50).map { "text \($0): the cat \(String(repeating: "sat ", count: $0 % 7))on the mat" }
        #expect(tokenizer.encodeBatch(texts) == texts.map(tokenizer.encode))
        #expect(tokenizer.encodeBatch(texts, threads: 4) == texts.map(tokenizer.encode))
        #expect(tokenizer.encodeBatch([]) == [])
    }
}

/// Long pre-tokens go through the heap merge; it must agree with the round-by-round merge everywhere.
@Suite struct LongWordTests {
    @Test func heapMergeEqualsRoundMerge() {
        let corpus = "aaaa abab abba baab aaab bbba the then there these those other mother bother aa bb ab ba"
        let tokenizer = BPETokenizer.train(texts: [corpus], vocabularySize: 320)
        var random = TestRandom(seed: 7)
        let alphabet = Array("abtheromsr".utf8)
        for length in [1, 2, 3, 5, 8, 13, 49, 100, 400] {
            for _ in 0..<20 {
                let word = (0..<length).map { _ in alphabet[random.int(below: alphabet.count)] }
                var rounds: [Int32] = []
                var heap: [Int32] = []
                word.withUnsafeBufferPointer { bytes in
                    rounds = bytes.map { tokenizer.byteIDs[Int($0)] }
                    heap = rounds
                }
                tokenizer.mergeInRounds(&rounds)
                tokenizer.mergeWithHeap(&heap)
                #expect(rounds == heap, "word \(String(decoding: word, as: UTF8.self))")
            }
        }
        // A very long run stays fast and round-trips.
        let long = String(repeating: "abba", count: 50_000)
        #expect(tokenizer.decode(tokenizer.encode(long)) == long)
    }
}
