/// Global gradient norm and clipping by it, as `torch.nn.utils.clip_grad_norm_`.
public enum GradientClipping {
    /// L2 norm of `count` values, accumulated in Double.
    public static func globalNorm(_ gradients: UnsafePointer<Float>, count: Int) -> Float {
        fatalError("GradientClipping.globalNorm: not implemented yet")
    }

    /// Scales `gradients` by `min(1, maxNorm / (norm + 1e-6))`, PyTorch's rule; returns the factor used.
    @discardableResult
    public static func clip(
        _ gradients: UnsafeMutablePointer<Float>, count: Int, norm: Float, maxNorm: Float
    ) -> Float {
        fatalError("GradientClipping.clip: not implemented yet")
    }
}
