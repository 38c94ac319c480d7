import RealModule

/// cos/sin tables (maxPositions, hs/2), computed in Double and stored as Float.
///
/// Entry `(p, i)` is the cosine (sine) of `p·theta^(−2i/hs)`, the angle by which rotary embedding turns pair
/// i of a head at position p. Computed once per model (Double keeps the angle exact to well below a Float
/// ulp even at large positions, where a Float product `p·freq` would lose digits), read by every call.
public struct RotaryTable: Sendable {
    public let headSize: Int
    public let maxPositions: Int
    /// `(maxPositions, hs/2)` row-major: position p's cosines (sines) start at `p·hs/2`.
    let cosines: [Float]
    let sines: [Float]

    /// - Precondition: `headSize` is even and positive, `maxPositions ≥ 0`.
    public init(headSize: Int, maxPositions: Int, theta: Double) {
        precondition(headSize > 0 && headSize % 2 == 0, "RotaryTable: head size \(headSize) is not even")
        precondition(maxPositions >= 0, "RotaryTable: negative maxPositions")
        self.headSize = headSize
        self.maxPositions = maxPositions
        let half = headSize / 2
        var cosines = [Float](repeating: 0, count: maxPositions * half)
        var sines = [Float](repeating: 0, count: maxPositions * half)
        for i in 0..<half {
            let frequency = Double.pow(theta, -Double(2 * i) / Double(headSize))
            for p in 0..<maxPositions {
                let angle = Double(p) * frequency
                cosines[p * half + i] = Float(Double.cos(angle))
                sines[p * half + i] = Float(Double.sin(angle))
            }
        }
        self.cosines = cosines
        self.sines = sines
    }
}

/// Rotary position embedding (RoPE) in Hugging Face Llama's "rotate_half" convention: for head size hs
/// (even), pair i (0 ≤ i < hs/2) is elements `(i, i + hs/2)` of a head, turned by the angle
/// `position·theta^(−2i/hs)`: `x1' = x1·cos − x2·sin`, `x2' = x2·cos + x1·sin`. Applied to queries and keys
/// (not values), so that a query–key dot product depends on their positions only through the difference.
///
/// Shapes: `x` holds `rows` rows `rowStride` floats apart (B·T rows, in the model the fused qkv buffer); the
/// first `heads·hs` floats of each row are rotated, the rest left alone.
public enum Rotary {
    /// Rotates in place `heads` consecutive heads of hs floats at the start of each row of `x`: row r (0 ..< rows) starts at x + r·rowStride and sits at position (r % time) + positionOffset.
    /// (In the model, a row of the fused qkv buffer is [Q (NH·hs) | K (KV·hs) | V (KV·hs)], so one call with heads = NH + KV rotates both Q and K.)
    ///
    /// Rows are spread over `ComputeThreads`.
    /// - Precondition: every position is below `table.maxPositions`, and `heads·hs ≤ rowStride`.
    public static func forward(
        _ x: UnsafeMutablePointer<Float>, rows: Int, time: Int, rowStride: Int, heads: Int, table: RotaryTable,
        positionOffset: Int = 0
    ) {
        rotate(x, rows: rows, time: time, rowStride: rowStride, heads: heads, table: table,
               positionOffset: positionOffset, sign: 1)
    }

    /// The backward: rotates a gradient in place by the inverse rotation (the transpose), same arguments.
    ///
    /// Unlike the other kernels' backward this does not accumulate: the rotation is linear and orthogonal,
    /// so `dX = Rᵀ·dOut` is computed in place, rewriting `dX` (which holds dOut on entry). In the model that
    /// is the dQKV buffer the attention backward has just filled, between it and the qkv matmul's backward.
    public static func backward(
        _ dX: UnsafeMutablePointer<Float>, rows: Int, time: Int, rowStride: Int, heads: Int, table: RotaryTable,
        positionOffset: Int = 0
    ) {
        rotate(dX, rows: rows, time: time, rowStride: rowStride, heads: heads, table: table,
               positionOffset: positionOffset, sign: -1)
    }

    /// Turns each pair by the table's angle (`sign` 1) or by minus it (`sign` −1, the transpose).
    private static func rotate(
        _ x: UnsafeMutablePointer<Float>, rows: Int, time: Int, rowStride: Int, heads: Int, table: RotaryTable,
        positionOffset: Int, sign: Float
    ) {
        guard rows > 0 else { return }
        let hs = table.headSize, half = hs / 2
        precondition(time > 0 && positionOffset >= 0, "Rotary: bad time \(time) or offset \(positionOffset)")
        precondition(heads &* hs <= rowStride, "Rotary: \(heads) heads of \(hs) do not fit a row of \(rowStride)")
        precondition(
            min(rows, time) &- 1 &+ positionOffset < table.maxPositions,
            "Rotary: positions up to \(min(rows, time) - 1 + positionOffset) beyond the table's \(table.maxPositions)")
        table.cosines.withUnsafeBufferPointer { cosines in
            table.sines.withUnsafeBufferPointer { sines in
                let cosines = cosines.baseAddress!, sines = sines.baseAddress!
                Parallel.forEachRange(rows, minimumChunk: max(1, (1 << 13) / max(1, heads &* hs))) { range in
                    for r in range {
                        let position = r % time &+ positionOffset
                        let c = cosines + position &* half, s = sines + position &* half
                        let row = x + r &* rowStride
                        for head in 0..<heads {
                            let x1 = row + head &* hs, x2 = x1 + half
                            for i in 0..<half {
                                let a = x1[i], b = x2[i], cos = c[i], sin = sign * s[i]
                                x1[i] = a * cos - b * sin
                                x2[i] = b * cos + a * sin
                            }
                        }
                    }
                }
            }
        }
    }

    /// The same rotation in `T`, angles computed in `T` from `theta`, the oracle for tests. Returns a copy of
    /// `x` with the first `heads·headSize` values of each of the `rows` rows rotated.
    public static func forwardReference<T: Real>(
        _ x: [T], rows: Int, time: Int, rowStride: Int, heads: Int, headSize: Int, theta: T,
        positionOffset: Int = 0
    ) -> [T] {
        var out = x
        let half = headSize / 2
        for r in 0..<rows {
            let position = T(r % time + positionOffset)
            for head in 0..<heads {
                let start = r * rowStride + head * headSize
                for i in 0..<half {
                    let angle = position * T.pow(theta, -T(2 * i) / T(headSize))
                    let a = x[start + i], b = x[start + half + i]
                    out[start + i] = a * T.cos(angle) - b * T.sin(angle)
                    out[start + half + i] = b * T.cos(angle) + a * T.sin(angle)
                }
            }
        }
        return out
    }
}
