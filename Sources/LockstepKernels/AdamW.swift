/// AdamW with decoupled weight decay and bias correction, as PyTorch's `torch.optim.AdamW`.
///
/// Works on one contiguous range of parameters; parameter groups (decay on for matrices, off for biases
/// and LayerNorm) are separate calls with their own `weightDecay`.
public struct AdamWSettings: Sendable, Equatable, Codable {
    public var beta1: Float
    public var beta2: Float
    public var epsilon: Float
    public var weightDecay: Float

    public init(beta1: Float = 0.9, beta2: Float = 0.95, epsilon: Float = 1e-8, weightDecay: Float = 0.1) {
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
    }
}

public enum AdamW {
    /// One update of `count` parameters in place. `step` is 1-based (bias correction uses it);
    /// `m`, `v` are the first and second moments, same layout as `parameters`.
    public static func update(
        parameters: UnsafeMutablePointer<Float>, gradients: UnsafePointer<Float>,
        m: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>, count: Int,
        step: Int, learningRate: Float, settings: AdamWSettings, applyWeightDecay: Bool
    ) {
        fatalError("AdamW.update: not implemented yet")
    }
}
