import Foundation
import LockstepRandom

extension GPT {
    /// GPT-2's initialisation, as Hugging Face's `GPT2PreTrainedModel._init_weights`: weights and embeddings
    /// normal(0, 0.02), the residual projections (`attn.c_proj.weight`, `mlp.c_proj.weight`) normal(0,
    /// 0.02 / √(2L)), biases 0, LayerNorm weights 1, `score.weight` normal(0, 0.02). Deterministic in `seed`:
    /// values are drawn in buffer order from SplitMix64 through Box–Muller.
    public func initializeRandomly(seed: UInt64) {
        var random = NormalRandom(seed: seed)
        let residualScale = 1 / Float(2 * config.layerCount).squareRoot()
        for tensor in layout.tensors {
            let values = UnsafeMutableBufferPointer(rebasing: parameters[tensor.range])
            let name = tensor.name
            if name.hasSuffix(".bias") {
                values.update(repeating: 0)
            } else if name.contains(".ln_") {
                values.update(repeating: 1)
            } else {
                let std: Float = name.hasSuffix("c_proj.weight") ? 0.02 * residualScale : 0.02
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
