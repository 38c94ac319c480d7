import Foundation
import Testing
@testable import LockstepData

@Suite struct LabeledBatchStreamTests {
    static let T = 6
    static let pad: Int32 = -7

    /// A byte-level stand-in for the model's tokenizer: one id per UTF-8 byte.
    static func bytes(_ text: String) -> [Int32] { text.utf8.map { Int32($0) } }

    /// 40 examples "e0", "e1", ..., with a few longer than T, and labels 0, 1, 2 in turn.
    static let examples = (0..<40).map {
        LabeledExample(text: $0 % 7 == 0 ? "example number \($0)" : "e\($0)", label: Int32($0 % 3))
    }

    private func stream(G: Int = 6, N: Int, rank: Int, shuffle: Bool = true, seed: UInt64 = 3, cursor: DataCursor = .init(epoch: 0, position: 0)) throws -> LabeledBatchStream {
        try LabeledBatchStream(
            examples: Self.examples, sequenceLength: Self.T, padID: Self.pad, globalBatchSize: G, seed: seed,
            shuffle: shuffle, rank: rank, worldSize: N, cursor: cursor, tokenize: Self.bytes)
    }

    /// One global batch as rows of (tokens..., length, label), gathered from N workers in rank order.
    private func globalBatches(N: Int, steps: Int, shuffle: Bool = true, cursor: DataCursor = .init(epoch: 0, position: 0)) throws -> (batches: [[[Int32]]], cursor: DataCursor) {
        let streams = try (0..<N).map { try stream(N: N, rank: $0, shuffle: shuffle, cursor: cursor) }
        let local = 6 / N
        var tokens = [Int32](repeating: 0, count: local * Self.T)
        var lengths = [Int32](repeating: 0, count: local)
        var labels = lengths
        var batches: [[[Int32]]] = []
        for _ in 0..<steps {
            var rows: [[Int32]] = []
            for stream in streams {
                #expect(stream.localBatchSize == local)
                stream.nextBatch(tokens: &tokens, lengths: &lengths, labels: &labels)
                for b in 0..<local { rows.append(Array(tokens[(b * Self.T)..<((b + 1) * Self.T)]) + [lengths[b], labels[b]]) }
            }
            batches.append(rows)
        }
        return (batches, streams[0].cursor)
    }

    @Test func rowsAreTruncatedAndPadded() throws {
        let unshuffled = try stream(N: 1, rank: 0, shuffle: false)
        var tokens = [Int32](repeating: 0, count: 6 * Self.T)
        var lengths = [Int32](repeating: 0, count: 6)
        var labels = lengths
        unshuffled.nextBatch(tokens: &tokens, lengths: &lengths, labels: &labels)
        // Example 0 is "example number 0": cut to its first 6 bytes. Example 1 is "e1": 2 bytes, then padding.
        #expect(Array(tokens[0..<6]) == "exampl".utf8.map { Int32($0) })
        #expect(Array(tokens[6..<12]) == [101, 49, -7, -7, -7, -7])
        #expect(lengths == [6, 2, 2, 2, 2, 2])
        #expect(labels == [0, 1, 2, 0, 1, 2])
    }

    @Test func oneTwoAndThreeWorkersReadTheSameGlobalBatches() throws {
        for shuffle in [true, false] {
            // 40 examples = 6 batches of 6 per epoch; 14 steps cross two epoch boundaries.
            let one = try globalBatches(N: 1, steps: 14, shuffle: shuffle)
            let two = try globalBatches(N: 2, steps: 14, shuffle: shuffle)
            let three = try globalBatches(N: 3, steps: 14, shuffle: shuffle)
            #expect(one.batches == two.batches && one.batches == three.batches)
            #expect(one.cursor == DataCursor(epoch: 2, position: 12))
            #expect(two.cursor == one.cursor && three.cursor == one.cursor)
        }
    }

    @Test func savedCursorContinuesTheExactSequence() throws {
        let straight = try globalBatches(N: 3, steps: 10)
        let first = try globalBatches(N: 3, steps: 4)
        let restored = try JSONDecoder().decode(DataCursor.self, from: JSONEncoder().encode(first.cursor))
        let rest = try globalBatches(N: 2, steps: 6, cursor: restored)
        #expect(first.batches + rest.batches == straight.batches)
    }

    @Test func epochsAreSeededPermutationsAndUnshuffledIsFileOrder() throws {
        let s = try stream(N: 1, rank: 0)
        let epoch0 = (0..<40).map { s.exampleIndex(atPosition: $0, epoch: 0) }
        let epoch1 = (0..<40).map { s.exampleIndex(atPosition: $0, epoch: 1) }
        #expect(epoch0.sorted() == Array(0..<40) && epoch1.sorted() == Array(0..<40))
        #expect(epoch0 != epoch1 && epoch0 != Array(0..<40))
        let other = try stream(N: 1, rank: 0, seed: 4)
        #expect((0..<40).map { other.exampleIndex(atPosition: $0, epoch: 0) } != epoch0)
        let plain = try stream(N: 1, rank: 0, shuffle: false)
        #expect((0..<40).map { plain.exampleIndex(atPosition: $0, epoch: 5) } == Array(0..<40))
    }

    @Test func rejectsBadShapes() throws {
        #expect(throws: DataError.self) { try stream(G: 6, N: 4, rank: 0) }
        #expect(throws: DataError.self) { try stream(G: 42, N: 1, rank: 0) }
        #expect(throws: DataError.self) { try stream(N: 1, rank: 0, cursor: DataCursor(epoch: -1, position: 0)) }
    }

    /// `classification.echo`: the text twice, one space between unless the text ends in whitespace already (as
    /// GLUE's SST-2 sentences do), so no word runs into the next; without echo, the text as it is.
    @Test func echoWritesTheTextTwice() {
        #expect(LabeledBatchStream.classifierText("a fine film", echo: false) == "a fine film")
        #expect(LabeledBatchStream.classifierText("a fine film", echo: true) == "a fine film a fine film")
        #expect(LabeledBatchStream.classifierText("a fine film ", echo: true) == "a fine film a fine film ")
        #expect(LabeledBatchStream.classifierText("line\n", echo: true) == "line\nline\n")
        #expect(LabeledBatchStream.classifierText("", echo: true) == "")
    }
}
