import Foundation
import LockstepRandom

extension GPT {
    /// GPT-2's initialisation, as Hugging Face's `GPT2PreTrainedModel._init_weights`, chosen by each tensor's
    /// role and used for both families: matrices, tables and heads normal(0, 0.02), the residual projections
    /// (`c_proj`, `o_proj`, `down_proj`) normal(0, 0.02 / √(2L)), biases 0, norm weights 1. (Llama's own
    /// initialisation differs only in not shrinking the residual projections.) Deterministic in `seed`: values
    /// are drawn in buffer order from SplitMix64 through Box–Muller.
    public func initializeRandomly(seed: UInt64) {
        var random = NormalRandom(seed: seed)
        let residualScale = 1 / Float(2 * config.layerCount).squareRoot()
        for tensor in layout.tensors {
            let values = UnsafeMutableBufferPointer(rebasing: parameters[tensor.range])
            switch tensor.role {
            case .bias:
                values.update(repeating: 0)
            case .norm:
                values.update(repeating: 1)
            case .embedding, .matrix, .residualProjection, .head:
                let std: Float = tensor.role == .residualProjection ? 0.02 * residualScale : 0.02
                for i in values.indices { values[i] = std * random.next() }
            }
        }
    }

    /// Draws a fresh classification head: `score.weight (K, C)` normal(0, 0.02), as Hugging Face initialises
    /// `GPT2ForSequenceClassification.score` on top of a pretrained GPT-2 body. Every other parameter is left
    /// as it is. Deterministic in `seed` (its own stream, not the one `initializeRandomly` continues).
    /// - Precondition: the model has a score head (`config.labelCount` is set).
    public func initializeHead(seed: UInt64) {
        guard let K = config.labelCount, let score = layout.score else {
            preconditionFailure("initializeHead needs a model with labelCount")
        }
        var random = NormalRandom(seed: seed)
        let values = UnsafeMutableBufferPointer(rebasing: parameters[score..<(score + K * config.channels)])
        for i in values.indices { values[i] = 0.02 * random.next() }
    }
}

/// Standard normal samples: SplitMix64 for uniform bits, Box–Muller for the transform (both outputs used).
struct NormalRandom {
    private var bits: SplitMix64
    private var spare: Float?

    init(seed: UInt64) { bits = SplitMix64(seed: seed) }

    mutating func next() -> Float {
        if let spare {
            self.spare = nil
            return spare
        }
        let radius = (-2 * log(bits.unitIntervalExcludingZero())).squareRoot()
        let angle = 2 * Double.pi * bits.unitIntervalExcludingZero()
        spare = Float(radius * sin(angle))
        return Float(radius * cos(angle))
    }
}
