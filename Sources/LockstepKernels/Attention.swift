import COpenBLAS
import RealModule

/// Causal multi-head self-attention (scaled dot product, causal softmax), after GPT-2's `c_attn`.
///
/// Shapes: `qkv (B, T, 3C)` holds Q, K, V side by side per position, as `c_attn` writes them;
/// head h uses channels `h·hs ..< (h+1)·hs` of each, with `hs = C / NH`. `out (B, T, C)` is the heads'
/// outputs concatenated (the input of `c_proj`). `att (B, NH, T, T)` keeps the softmax probabilities for
/// backward (entries above the diagonal are zero).
public enum Attention {
    public static func forward(
        out: UnsafeMutablePointer<Float>, att: UnsafeMutablePointer<Float>, qkv: UnsafePointer<Float>,
        batch: Int, time: Int, channels: Int, heads: Int
    ) {
        fatalError("Attention.forward: not implemented yet")
    }

    /// Accumulates into `dQKV (B, T, 3C)`. `scratch (B, NH, T, T)` is working memory, overwritten.
    public static func backward(
        dQKV: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>,
        qkv: UnsafePointer<Float>, att: UnsafePointer<Float>, batch: Int, time: Int, channels: Int, heads: Int
    ) {
        fatalError("Attention.backward: not implemented yet")
    }

    /// Returns `out (B, T, C)`.
    public static func forwardReference<T: Real>(
        qkv: [T], batch: Int, time: Int, channels: Int, heads: Int
    ) -> [T] {
        fatalError("Attention.forwardReference: not implemented yet")
    }
}
