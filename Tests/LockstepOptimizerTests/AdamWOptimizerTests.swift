import LockstepKernels
import LockstepModel
import LockstepTestSupport
import Testing

@testable import LockstepOptimizer

/// The training step's update from a sum of replicas' gradients: the mean's norm, clipping and the mean folded
/// into one AdamW call.
@Suite struct AdamWOptimizerTests {
    static let layout = ParameterLayout(config: GPTConfig(vocabularySize: 11, contextLength: 4, layerCount: 1, headCount: 2, channels: 4))

    static func values(_ count: Int, scale: Float, seed: Int) -> [Float] {
        (0..<count).map { Float(($0 * 37 + seed * 11) % 23 - 11) * scale }
    }

    @Test func meanNormIsTheSumsNormTimesTheFactor() {
        var sum = Self.values(Self.layout.count, scale: 0.5, seed: 1)
        let norm = sum.withUnsafeMutableBufferPointer { AdamWOptimizer.meanGradientNorm(gradientSum: $0, meanFactor: 0.25) }
        let mean = sum.map { Double($0) * 0.25 }
        let expected = mean.reduce(0) { $0 + $1 * $1 }.squareRoot()
        #expect(abs(Double(norm) - expected) <= 1e-5 * expected)
    }

    /// Clipped or not, the folded step equals clipping the mean by hand and stepping on it.
    @Test(arguments: [Float(0), 0.5, 1000]) func foldedStepEqualsClipThenStep(maxNorm: Float) {
        let count = Self.layout.count
        let settings = AdamWSettings(beta1: 0.9, beta2: 0.95, epsilon: 1e-8, weightDecay: 0.1)
        var sum = Self.values(count, scale: 0.25, seed: 2)
        var folded = Self.values(count, scale: 0.01, seed: 3)
        var byHand = folded
        let meanFactor: Float = 0.5
        let optimizer = AdamWOptimizer(layout: Self.layout), reference = AdamWOptimizer(layout: Self.layout)
        sum.withUnsafeMutableBufferPointer { gradients in
            let norm = AdamWOptimizer.meanGradientNorm(gradientSum: gradients, meanFactor: meanFactor)
            folded.withUnsafeMutableBufferPointer {
                optimizer.step(
                    parameters: $0, gradientSum: gradients, norm: norm, meanFactor: meanFactor, maxNorm: maxNorm,
                    learningRate: 1e-2, settings: settings)
            }
            let clip = maxNorm > 0 ? min(1, maxNorm / (norm + 1e-6)) : 1
            var mean = gradients.map { $0 * meanFactor * clip }
            byHand.withUnsafeMutableBufferPointer { parameters in
                mean.withUnsafeMutableBufferPointer {
                    reference.step(parameters: parameters, gradients: $0, learningRate: 1e-2, settings: settings)
                }
            }
        }
        for i in 0..<count {
            #expect(abs(folded[i] - byHand[i]) <= 1e-6 * max(1, abs(byHand[i])), "parameter \(i)")
        }
        #expect(optimizer.stepCount == 1)
    }
}
