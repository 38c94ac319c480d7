import COpenBLAS
import RealModule

/// Causal multi-head self-attention (scaled dot product, causal softmax), after GPT-2's `c_attn`, with
/// optional grouped-query attention (Llama's `num_key_value_heads`).
///
/// Shapes: `qkv (B, T, (NH + 2·KV)·hs)` holds `[Q (NH·hs) | K (KV·hs) | V (KV·hs)]` side by side per
/// position, with `hs = C / NH` and KV key/value heads (KV = NH unless `keyValueHeads` says otherwise, which
/// is GPT-2's `(B, T, 3C)` as `c_attn` writes it). Query head h uses channels `h·hs ..< (h+1)·hs` of Q and
/// reads key/value head `h / (NH / KV)`: consecutive groups of NH / KV query heads share one key/value head,
/// as Hugging Face's `repeat_kv` lays them out. `out (B, T, C)` is the query heads' outputs concatenated
/// (the input of `c_proj`/`o_proj`). `att (B, NH, T, T)` keeps the softmax probabilities for backward
/// (entries above the diagonal are zero).
///
/// Per (batch, head), with `Q, K, V (T, hs)` read in place from `qkv` as strided views (leading dimension
/// `(NH + 2·KV)·hs`, so nothing is copied, nor are shared K/V repeated):
/// `att = causalSoftmax(Q·Kᵀ / √hs)`, `out = att·V`. Both products are single `cblas_sgemm` calls, made from
/// the calling thread (OpenBLAS threads them itself); the softmax between them runs over `ComputeThreads`,
/// pairs in parallel, when the call is big enough to pay for it.
public enum Attention {
    /// Below this many multiply-adds per call (`B·NH·T²·hs`, one product's worth), the pairs run one after
    /// another: dispatching to other threads costs more than it saves.
    static let parallelMinimumWork = 1 << 15

    /// Overwrites `out` and `att` (including `att`'s upper triangle, set to zero).
    /// - Precondition: `channels` is a multiple of `heads`, and `heads` of `keyValueHeads` (nil means `heads`).
    public static func forward(
        out: UnsafeMutablePointer<Float>, att: UnsafeMutablePointer<Float>, qkv: UnsafePointer<Float>,
        batch: Int, time: Int, channels: Int, heads: Int, keyValueHeads: Int? = nil
    ) {
        let g = Geometry(channels: channels, heads: heads, keyValueHeads: keyValueHeads)
        let hs = g.headSize, width = g.width
        let t32 = Int32(time), hs32 = Int32(hs), c32 = Int32(channels), ld = Int32(width)
        let scale = 1 / Float(hs).squareRoot()
        // The products run one pair after another on this thread, each over OpenBLAS's own threads; only the
        // softmax between them is spread over `ComputeThreads`. Calling a multi-threaded OpenBLAS from several
        // threads at once makes its threads and ours compete for the same cores, and its results depend on
        // which thread count each call happened to see.
        forEachPair(batch: batch, heads: heads) { b, h in
            let row = qkv + b &* time &* width
            let q = row + h &* hs, k = row + g.keyOffset(h)
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
            let v = qkv + (b &* time &* width &+ g.valueOffset(h))
            let probabilities = att + (b &* heads &+ h) &* time &* time
            let headOut = out + (b &* time &* channels &+ h &* hs)
            // (T, T) · (T, hs) -> (T, hs), written into this head's columns of out.
            cblas_sgemm(
                CblasRowMajor, CblasNoTrans, CblasNoTrans, t32, hs32, t32, 1, probabilities, t32, v, ld, 0,
                headOut, c32)
        }
    }

    /// Accumulates into `dQKV (B, T, (NH + 2·KV)·hs)`. `scratch (B, NH, T, T)` is working memory, overwritten.
    ///
    /// Per (batch, head): `dAtt = dOut·Vᵀ`, `dV += attᵀ·dOut`; through the softmax
    /// `dScores[t, s] = att[t, s]·(dAtt[t, s] − Σᵤ att[t, u]·dAtt[t, u])`; then with the 1/√hs scale folded
    /// into alpha, `dQ += dScores·K / √hs` and `dK += dScoresᵀ·Q / √hs`. With grouped-query attention the
    /// query heads of a group all add into their shared key/value head's dK and dV columns: the products run
    /// one after another on the calling thread, heads in order, so the sums are race-free and the same bits
    /// every run.
    public static func backward(
        dQKV: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>,
        qkv: UnsafePointer<Float>, att: UnsafePointer<Float>, batch: Int, time: Int, channels: Int, heads: Int,
        keyValueHeads: Int? = nil
    ) {
        let g = Geometry(channels: channels, heads: heads, keyValueHeads: keyValueHeads)
        let hs = g.headSize, width = g.width
        let t32 = Int32(time), hs32 = Int32(hs), c32 = Int32(channels), ld = Int32(width)
        let scale = 1 / Float(hs).squareRoot()
        // As in forward: products in order on this thread, the softmax's backward spread over threads.
        forEachPair(batch: batch, heads: heads) { b, h in
            let offset = b &* time &* width &+ g.valueOffset(h)
            let v = qkv + offset, dV = dQKV + offset
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
            let row = b &* time &* width
            let q = qkv + (row &+ h &* hs), k = qkv + (row &+ g.keyOffset(h))
            let dQ = dQKV + (row &+ h &* hs), dK = dQKV + (row &+ g.keyOffset(h))
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
        qkv: [T], batch: Int, time: Int, channels: Int, heads: Int, keyValueHeads: Int? = nil
    ) -> [T] {
        let hs = channels / heads
        let kvHeads = keyValueHeads ?? heads
        let width = (heads + 2 * kvHeads) * hs
        let scale = 1 / T.sqrt(T(hs))
        var out = [T](repeating: 0, count: batch * time * channels)
        var weights = [T](repeating: 0, count: time)
        for b in 0..<batch {
            for h in 0..<heads {
                // Part 0 is Q (query head h), 1 is K and 2 is V (key/value head h / (NH / KV)).
                let kv = h / (heads / kvHeads)
                func at(_ t: Int, _ part: Int, _ i: Int) -> T {
                    let column = part == 0 ? h * hs : heads * hs + (part - 1) * kvHeads * hs + kv * hs
                    return qkv[(b * time + t) * width + column + i]
                }
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

    /// One new query position against cached keys and values, for incremental decoding (generation): the
    /// last row of `forward` for a sequence of `length` positions, without the `(T, T)` square.
    ///
    /// Shapes: `query (NH·hs)` is the new position's queries; `keys, values (length, KV·hs)`, row j the key
    /// (value) heads of position j, the new position's included as row `length − 1`; `scores (length)` is
    /// scratch, overwritten; writes `out (NH·hs)`. Query head h reads key/value head `h / (NH / KV)`, as in
    /// `forward`. Per head: `p = softmax(K·q / √hs)`, `out = pᵀ·V`, in plain vector loops (one position's
    /// work is too small for sgemm or threads to pay).
    /// - Precondition: `length ≥ 1` and `heads` is a multiple of `keyValueHeads`.
    public static func decodeStep(
        out: UnsafeMutablePointer<Float>, scores: UnsafeMutablePointer<Float>, query: UnsafePointer<Float>,
        keys: UnsafePointer<Float>, values: UnsafePointer<Float>, length: Int, heads: Int, keyValueHeads: Int,
        headSize: Int
    ) {
        precondition(length > 0, "Attention.decodeStep: no positions")
        precondition(
            keyValueHeads > 0 && heads % keyValueHeads == 0,
            "Attention: \(heads) heads do not split into groups for \(keyValueHeads) key/value heads")
        let hs = headSize, stride = keyValueHeads &* headSize, group = heads / keyValueHeads
        let scale = 1 / Float(hs).squareRoot()
        for h in 0..<heads {
            let q = query + h &* hs, column = (h / group) &* hs
            for j in 0..<length {
                scores[j] = VectorMath.dot(q, keys + (j &* stride &+ column), count: hs) * scale
            }
            _ = VectorMath.softmax(scores, into: scores, count: length)
            let headOut = out + h &* hs
            for i in 0..<hs { headOut[i] = 0 }
            for j in 0..<length {
                let p = scores[j], v = values + (j &* stride &+ column)
                for i in 0..<hs { headOut[i] += p * v[i] }
            }
        }
    }

    // MARK: - Helpers

    /// Where each head's Q, K and V sit in a row of `qkv`, with the preconditions every entry point checks.
    private struct Geometry {
        let headSize: Int
        /// Query heads per key/value head.
        let group: Int
        /// Start of K and of V in a row: NH·hs and (NH + KV)·hs.
        let keysStart: Int, valuesStart: Int
        /// Floats per row, `(NH + 2·KV)·hs` (3C when KV = NH).
        let width: Int

        init(channels: Int, heads: Int, keyValueHeads: Int?) {
            precondition(heads > 0 && channels % heads == 0, "Attention: \(channels) channels do not split into \(heads) heads")
            let kv = keyValueHeads ?? heads
            precondition(
                kv > 0 && heads % kv == 0,
                "Attention: \(heads) heads do not split into groups for \(kv) key/value heads")
            headSize = channels / heads
            group = heads / kv
            keysStart = channels
            valuesStart = channels &+ kv &* headSize
            width = valuesStart &+ kv &* headSize
        }

        /// Column of query head h's key head in a row.
        func keyOffset(_ h: Int) -> Int { keysStart &+ (h / group) &* headSize }
        /// Column of query head h's value head in a row.
        func valueOffset(_ h: Int) -> Int { valuesStart &+ (h / group) &* headSize }
    }


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
