import RealModule

/// Token + position embedding: `out[b, t] = wte[tokens[b, t]] + wpe[t]`, or the token row alone for a model
/// without a position table (rotary positions act inside attention instead).
///
/// Shapes: `tokens (B, T)` as Int32, `wte (V, C)`, `wpe (maxT, C)` with T ≤ maxT, `out (B, T, C)`.
/// Token ids are not range-checked here (the kernel does not know V): the data loader and the model check
/// them against the vocabulary before they reach this hot loop.
public enum Embedding {
    /// Overwrites `out`. Rows are spread over `ComputeThreads`.
    public static func forward(
        out: UnsafeMutablePointer<Float>, tokens: UnsafePointer<Int32>, wte: UnsafePointer<Float>,
        wpe: UnsafePointer<Float>?, batch: Int, time: Int, channels: Int
    ) {
        Parallel.forEachRange(batch &* time, minimumChunk: max(1, (1 << 14) / max(1, channels))) { rows in
            for n in rows {
                let row = out + n &* channels
                let tokenRow = wte + Int(tokens[n]) &* channels
                guard let wpe else {
                    row.update(from: tokenRow, count: channels)
                    continue
                }
                let positionRow = wpe + (n % time) &* channels
                for i in 0..<channels { row[i] = tokenRow[i] + positionRow[i] }
            }
        }
    }

    /// Scatter-adds `dOut` rows into `dWte` (by token) and `dWpe` (by position); a nil table is left out (a
    /// replica that defers the token lookup's share, or adds other replicas' deferred rows). Accumulates: a
    /// token that occurs several times, and every position across the batch, receive the sum of their rows.
    /// Spread over `ComputeThreads` by channels (two rows of one token never race), each channel adding its
    /// rows in order.
    public static func backward(
        dWte: UnsafeMutablePointer<Float>?, dWpe: UnsafeMutablePointer<Float>?, dOut: UnsafePointer<Float>,
        tokens: UnsafePointer<Int32>, batch: Int, time: Int, channels: Int
    ) {
        let rows = batch &* time
        Parallel.forEachRange(channels, minimumChunk: max(8, (1 << 14) / max(1, rows))) { columns in
            for n in 0..<rows {
                let row = dOut + n &* channels
                if let dWte {
                    let tokenRow = dWte + Int(tokens[n]) &* channels
                    for i in columns { tokenRow[i] += row[i] }
                }
                if let dWpe {
                    let positionRow = dWpe + (n % time) &* channels
                    for i in columns { positionRow[i] += row[i] }
                }
            }
        }
    }

    /// Naive lookup, the oracle for tests. Returns `out (B, T, C)`.
    public static func forwardReference<T: Real>(
        tokens: [Int32], wte: [T], wpe: [T], batch: Int, time: Int, channels: Int
    ) -> [T] {
        var out = [T](repeating: 0, count: batch * time * channels)
        for b in 0..<batch {
            for t in 0..<time {
                let token = Int(tokens[b * time + t])
                for i in 0..<channels {
                    out[(b * time + t) * channels + i] = wte[token * channels + i] + wpe[t * channels + i]
                }
            }
        }
        return out
    }
}
