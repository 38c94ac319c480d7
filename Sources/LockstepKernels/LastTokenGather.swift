import RealModule

/// Gathers each sequence's last real (non-padding) position, as `GPT2ForSequenceClassification` does.
///
/// Shapes: `hidden (B, T, C)`, `lengths (B)` as Int32 with `1 ≤ length ≤ T` (right padding), `out (B, C)`:
/// `out[b] = hidden[b, lengths[b] - 1]`.
///
/// A length of 0 (an empty sequence has no last token) or above T (it would read the next sequence) is a
/// caller bug, not a data error: the data loader rejects empty texts and truncates to T before batching.
/// Both `forward` and `backward` stop with a precondition naming the row and its length. The check is B
/// comparisons, nothing next to the copy itself.
public enum LastTokenGather {
    /// Overwrites `out (B, C)`.
    public static func forward(
        out: UnsafeMutablePointer<Float>, hidden: UnsafePointer<Float>, lengths: UnsafePointer<Int32>,
        batch: Int, time: Int, channels: Int
    ) {
        checkLengths(lengths, batch: batch, time: time, caller: "forward")
        for b in 0..<batch {
            let position = Int(lengths[b]) &- 1
            let source = hidden + (b &* time &+ position) &* channels
            (out + b &* channels).update(from: source, count: channels)
        }
    }

    /// Accumulates `dOut[b]` into `dHidden[b, lengths[b] - 1]`.
    public static func backward(
        dHidden: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>, lengths: UnsafePointer<Int32>,
        batch: Int, time: Int, channels: Int
    ) {
        checkLengths(lengths, batch: batch, time: time, caller: "backward")
        for b in 0..<batch {
            let position = Int(lengths[b]) &- 1
            let destination = dHidden + (b &* time &+ position) &* channels
            let source = dOut + b &* channels
            for c in 0..<channels { destination[c] += source[c] }
        }
    }

    /// The gather written from the definition; arrays are row-major. Same preconditions as `forward`.
    public static func forwardReference<T: Real>(
        hidden: [T], lengths: [Int32], batch: Int, time: Int, channels: Int
    ) -> [T] {
        var out = [T](repeating: 0, count: batch * channels)
        for b in 0..<batch {
            let length = Int(lengths[b])
            precondition(length >= 1 && length <= time, "LastTokenGather.forwardReference: length \(length) of row \(b)")
            for c in 0..<channels { out[b * channels + c] = hidden[(b * time + length - 1) * channels + c] }
        }
        return out
    }

    private static func checkLengths(_ lengths: UnsafePointer<Int32>, batch: Int, time: Int, caller: String) {
        for b in 0..<batch {
            let length = lengths[b]
            precondition(
                length >= 1 && Int(length) <= time,
                "LastTokenGather.\(caller): length \(length) of row \(b) is outside 1...\(time) (T)")
        }
    }
}
