import COpenBLAS
import RealModule

/// Causal multi-head self-attention (scaled dot product, causal softmax), after GPT-2's `c_attn`.
///
/// Shapes: `qkv (B, T, 3C)` holds Q, K, V side by side per position, as `c_attn` writes them;
/// head h uses channels `h·hs ..< (h+1)·hs` of each, with `hs = C / NH`. `out (B, T, C)` is the heads'
/// outputs concatenated (the input of `c_proj`). `att (B, NH, T, T)` keeps the softmax probabilities for
/// backward (entries above the diagonal are zero).
///
/// Per (batch, head), with `Q, K, V (T, hs)` read in place from `qkv` as strided views (leading dimension
/// 3C, so nothing is copied): `att = causalSoftmax(Q·Kᵀ / √hs)`, `out = att·V`. Both products are single
/// `cblas_sgemm` calls, made from the calling thread (OpenBLAS threads them itself); the softmax between them
/// runs over `ComputeThreads`, pairs in parallel, when the call is big enough to pay for it.
public enum Attention {
    /// Below this many multiply-adds per call (`B·NH·T²·hs`, one product's worth), the pairs run one after
    /// another: dispatching to other threads costs more than it saves.
    static let parallelMinimumWork = 1 << 15

    /// Overwrites `out` and `att` (including `att`'s upper triangle, set to zero).
    /// - Precondition: `channels` is a multiple of `heads`.
    public static func forward(
        out: UnsafeMutablePointer<Float>, att: UnsafeMutablePointer<Float>, qkv: UnsafePointer<Float>,
        batch: Int, time: Int, channels: Int, heads: Int
    ) {
        precondition(heads > 0 && channels % heads == 0, "Attention: \(channels) channels do not split into \(heads) heads")
        let hs = channels / heads
        let t32 = Int32(time), hs32 = Int32(hs), c32 = Int32(channels), ld = Int32(3 &* channels)
        let scale = 1 / Float(hs).squareRoot()
        // The products run one pair after another on this thread, each over OpenBLAS's own threads; only the
        // softmax between them is spread over `ComputeThreads`. Calling a multi-threaded OpenBLAS from several
        // threads at once makes its threads and ours compete for the same cores, and its results depend on
        // which thread count each call happened to see.
        forEachPair(batch: batch, heads: heads) { b, h in
            let q = qkv + (b &* time &* 3 &* channels &+ h &* hs)
            let k = q + channels
            let probabilities = att + (b &* heads &+ h) &* time &* time
            // (T, hs) · (T, hs)ᵀ -> (T, T) scores; the upper triangle is computed too (one sgemm beats T
            // gemv calls) and then overwritten by the softmax.
            cblas_sgemm(
                CblasRowMajor, CblasNoTrans, CblasTrans, t32, t32, hs32, scale, q, ld, k, ld, 0, probabilities, t32)
        }
        forEachSquare(batch: batch, heads: heads, time: time, headSize: hs) { square in
            causalSoftmax(att + square &* time &* time, time: time)
        }
        forEachPair(batch: batch, heads: heads) { b, h in
            let v = qkv + (b &* time &* 3 &* channels &+ h &* hs) + 2 &* channels
            let probabilities = att + (b &* heads &+ h) &* time &* time
            let headOut = out + (b &* time &* channels &+ h &* hs)
            // (T, T) · (T, hs) -> (T, hs), written into this head's columns of out.
            cblas_sgemm(
                CblasRowMajor, CblasNoTrans, CblasNoTrans, t32, hs32, t32, 1, probabilities, t32, v, ld, 0,
                headOut, c32)
        }
    }

    /// Accumulates into `dQKV (B, T, 3C)`. `scratch (B, NH, T, T)` is working memory, overwritten.
    ///
    /// Per (batch, head): `dAtt = dOut·Vᵀ`, `dV += attᵀ·dOut`; through the softmax
    /// `dScores[t, s] = att[t, s]·(dAtt[t, s] − Σᵤ att[t, u]·dAtt[t, u])`; then with the 1/√hs scale folded
    /// into alpha, `dQ += dScores·K / √hs` and `dK += dScoresᵀ·Q / √hs`.
    public static func backward(
        dQKV: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>,
        qkv: UnsafePointer<Float>, att: UnsafePointer<Float>, batch: Int, time: Int, channels: Int, heads: Int
    ) {
        precondition(heads > 0 && channels % heads == 0, "Attention: \(channels) channels do not split into \(heads) heads")
        let hs = channels / heads
        let t32 = Int32(time), hs32 = Int32(hs), c32 = Int32(channels), ld = Int32(3 &* channels)
        let scale = 1 / Float(hs).squareRoot()
        // As in forward: products in order on this thread, the softmax's backward spread over threads.
        forEachPair(batch: batch, heads: heads) { b, h in
            let offset = b &* time &* 3 &* channels &+ h &* hs
            let v = qkv + offset + 2 &* channels, dV = dQKV + offset + 2 &* channels
            let square = (b &* heads &+ h) &* time &* time
            let headDOut = dOut + (b &* time &* channels &+ h &* hs)
            // dAtt (T, T) = dOut (T, hs) · V (T, hs)ᵀ
            cblas_sgemm(
                CblasRowMajor, CblasNoTrans, CblasTrans, t32, t32, hs32, 1, headDOut, c32, v, ld, 0, scratch + square, t32)
            // dV (T, hs) += att (T, T)ᵀ · dOut (T, hs)
            cblas_sgemm(
                CblasRowMajor, CblasTrans, CblasNoTrans, t32, hs32, t32, 1, att + square, t32, headDOut, c32, 1,
                dV, ld)
        }
        forEachSquare(batch: batch, heads: heads, time: time, headSize: hs) { square in
            let offset = square &* time &* time
            causalSoftmaxBackward(scratch + offset, probabilities: att + offset, time: time)
        }
        forEachPair(batch: batch, heads: heads) { b, h in
            let offset = b &* time &* 3 &* channels &+ h &* hs
            let q = qkv + offset, k = q + channels
            let dQ = dQKV + offset, dK = dQ + channels
            let dScores = scratch + (b &* heads &+ h) &* time &* time
            // dQ (T, hs) += dScores (T, T) · K (T, hs) / √hs
            cblas_sgemm(
                CblasRowMajor, CblasNoTrans, CblasNoTrans, t32, hs32, t32, scale, dScores, t32, k, ld, 1, dQ, ld)
            // dK (T, hs) += dScores (T, T)ᵀ · Q (T, hs) / √hs
            cblas_sgemm(
                CblasRowMajor, CblasTrans, CblasNoTrans, t32, hs32, t32, scale, dScores, t32, q, ld, 1, dK, ld)
        }
    }

    /// Naive loops, the oracle for tests. Returns `out (B, T, C)`.
    public static func forwardReference<T: Real>(
        qkv: [T], batch: Int, time: Int, channels: Int, heads: Int
    ) -> [T] {
        let hs = channels / heads
        let scale = 1 / T.sqrt(T(hs))
        var out = [T](repeating: 0, count: batch * time * channels)
        var weights = [T](repeating: 0, count: time)
        for b in 0..<batch {
            for h in 0..<heads {
                func at(_ t: Int, _ part: Int, _ i: Int) -> T { qkv[(b * time + t) * 3 * channels + part * channels + h * hs + i] }
                for t in 0..<time {
                    for s in 0...t {
                        var dotProduct: T = 0
                        for i in 0..<hs { dotProduct += at(t, 0, i) * at(s, 1, i) }
                        weights[s] = dotProduct * scale
                    }
                    let largest = weights[0...t].max()!
                    var total: T = 0
                    for s in 0...t {
                        weights[s] = T.exp(weights[s] - largest)
                        total += weights[s]
                    }
                    for i in 0..<hs {
                        var sum: T = 0
                        for s in 0...t { sum += weights[s] / total * at(s, 2, i) }
                        out[(b * time + t) * channels + h * hs + i] = sum
                    }
                }
            }
        }
        return out
    }

    // MARK: - Helpers

    /// Runs `body(b, h)` for every (batch, head) pair, in order on the calling thread.
    private static func forEachPair(batch: Int, heads: Int, _ body: (Int, Int) -> Void) {
        for b in 0..<batch {
            for h in 0..<heads { body(b, h) }
        }
    }

    /// Runs `body(square)` for every (batch, head) pair's `(T, T)` square, `square = b·NH + h`: spread over
    /// `ComputeThreads` when the call has at least `parallelMinimumWork` multiply-adds, else in order.
    private static func forEachSquare(batch: Int, heads: Int, time: Int, headSize: Int, _ body: (Int) -> Void) {
        let perPair = max(1, time &* time &* headSize)
        Parallel.forEachRange(batch &* heads, minimumChunk: max(1, parallelMinimumWork / perPair)) { range in
            for square in range { body(square) }
        }
    }

    /// Turns scaled scores `(T, T)` into causal softmax probabilities in place: row t is normalised over
    /// columns `0...t` (the max is subtracted first, so exp never overflows), and columns after t become 0.
    private static func causalSoftmax(_ rows: UnsafeMutablePointer<Float>, time: Int) {
        for t in 0..<time {
            let row = rows + t &* time
            _ = VectorMath.softmax(row, into: row, count: t &+ 1)
            for s in (t &+ 1)..<time { row[s] = 0 }
        }
    }

    /// Replaces `dAtt (T, T)` in place by the gradient with respect to the scaled scores. Entries above the
    /// diagonal become 0: those scores were masked, so they get no gradient.
    private static func causalSoftmaxBackward(
        _ gradient: UnsafeMutablePointer<Float>, probabilities: UnsafePointer<Float>, time: Int
    ) {
        for t in 0..<time {
            let dRow = gradient + t &* time, pRow = probabilities + t &* time
            let weighted = VectorMath.dot(pRow, dRow, count: t &+ 1)
            for s in 0...t { dRow[s] = pRow[s] * (dRow[s] - weighted) }
            for s in (t &+ 1)..<time { dRow[s] = 0 }
        }
    }
}
