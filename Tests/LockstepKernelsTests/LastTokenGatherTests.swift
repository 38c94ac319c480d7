import LockstepTestSupport
import Testing

@testable import LockstepKernels

/// Last-token gather against its reference (exact: it is a copy) and its scatter-add backward against
/// finite differences (1e-5 relative: the loss is linear, so only Double rounding remains).
@Suite struct LastTokenGatherTests {
    /// (batch, time, channels, lengths): full, length-1 and in-between rows; channels not a multiple of 8.
    static let cases: [(batch: Int, time: Int, channels: Int, lengths: [Int32])] = [
        (1, 1, 1, [1]), (3, 5, 7, [5, 1, 3]), (4, 6, 16, [2, 6, 6, 4]), (2, 9, 3, [9, 8]),
    ]

    @Test func forwardMatchesReference() {
        var random = TestRandom(seed: 21)
        for (batch, time, channels, lengths) in Self.cases {
            let hidden = random.doubles(batch * time * channels)
            let expected = LastTokenGather.forwardReference(
                hidden: hidden, lengths: lengths, batch: batch, time: time, channels: channels)
            var out = [Float](repeating: .nan, count: batch * channels)
            LastTokenGather.forward(
                out: &out, hidden: hidden.floats, lengths: lengths, batch: batch, time: time, channels: channels)
            #expect(out.doubles == expected, "lengths \(lengths)")
            // The definition, spelled out once more: row b is position lengths[b] - 1.
            for b in 0..<batch {
                let start: Int = (b * time + Int(lengths[b]) - 1) * channels
                let row = Array(out[(b * channels)..<((b + 1) * channels)])
                let source = Array(hidden[start..<(start + channels)]).floats
                #expect(row == source, "row \(b)")
            }
        }
    }

    @Test func backwardMatchesFiniteDifferences() {
        var random = TestRandom(seed: 22)
        for (batch, time, channels, lengths) in Self.cases {
            let hidden = random.doubles(batch * time * channels)
            let dOut = random.doubles(batch * channels)
            let expected = numericalGradient(at: hidden) {
                dot(LastTokenGather.forwardReference(
                    hidden: $0, lengths: lengths, batch: batch, time: time, channels: channels), dOut)
            }
            // Starts non-zero to check that backward accumulates and leaves other positions alone.
            var dHidden = [Float](repeating: 0.5, count: batch * time * channels)
            LastTokenGather.backward(
                dHidden: &dHidden, dOut: dOut.floats, lengths: lengths, batch: batch, time: time, channels: channels)
            #expect(maxRelativeError(dHidden, expected.map { $0 + 0.5 }) < 1e-5, "lengths \(lengths)")
        }
    }

    /// Lengths outside `1...T` stop the process (a precondition), rather than reading another sequence.
    @Test func invalidLengthsStop() async throws {
        try await #expect(processExitsWith: .failure) {
            var out = [Float](repeating: 0, count: 2)
            LastTokenGather.forward(
                out: &out, hidden: [Float](repeating: 0, count: 8), lengths: [0], batch: 1, time: 4, channels: 2)
        }
        try await #expect(processExitsWith: .failure) {
            var dHidden = [Float](repeating: 0, count: 8)
            LastTokenGather.backward(
                dHidden: &dHidden, dOut: [Float](repeating: 0, count: 2), lengths: [5], batch: 1, time: 4, channels: 2)
        }
    }
}
