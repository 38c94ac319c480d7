import LockstepRandom
import Foundation

/// How the next token is drawn from the logits.
public struct SamplingSettings: Sendable, Equatable {
    /// 0 picks the most likely token (greedy).
    public var temperature: Double = 1
    /// Keep only the k most likely tokens (0: all).
    public var topK: Int = 0
    /// Keep the smallest set of most likely tokens whose probability reaches p (1: all).
    public var topP: Double = 1
    public var seed: UInt64 = 0

    public init(temperature: Double = 1, topK: Int = 0, topP: Double = 1, seed: UInt64 = 0) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.seed = seed
    }
}

/// Draws tokens from logits with temperature, top-k and top-p, reproducibly from a seed.
public struct Sampler {
    public let settings: SamplingSettings
    private var random: SplitMix64

    public init(settings: SamplingSettings) {
        self.settings = settings
        random = SplitMix64(seed: settings.seed)
    }

    /// Uniform in [0, 1).
    mutating func uniform() -> Double {
        random.unitInterval()
    }

    /// The next token id given `logits (V)`.
    public mutating func sample(_ logits: UnsafeBufferPointer<Float>) -> Int32 {
        if settings.temperature <= 0 {
            var best = 0
            for i in 1..<logits.count where logits[i] > logits[best] { best = i }
            return Int32(best)
        }
        var candidates = Array(0..<logits.count)
        candidates.sort { logits[$0] > logits[$1] }
        if settings.topK > 0 && settings.topK < candidates.count { candidates.removeLast(candidates.count - settings.topK) }
        let maximum = Double(logits[candidates[0]])
        var probabilities = candidates.map { Foundation.exp((Double(logits[$0]) - maximum) / settings.temperature) }
        let total = probabilities.reduce(0, +)
        for i in probabilities.indices { probabilities[i] /= total }
        if settings.topP < 1 {
            var cumulative = 0.0
            var keep = probabilities.count
            for (i, probability) in probabilities.enumerated() {
                cumulative += probability
                if cumulative >= settings.topP {
                    keep = i + 1
                    break
                }
            }
            probabilities.removeLast(probabilities.count - keep)
            candidates.removeLast(candidates.count - keep)
            let kept = probabilities.reduce(0, +)
            for i in probabilities.indices { probabilities[i] /= kept }
        }
        var draw = uniform()
        for (i, probability) in probabilities.enumerated() {
            draw -= probability
            if draw < 0 { return Int32(candidates[i]) }
        }
        return Int32(candidates[candidates.count - 1])
    }
}
