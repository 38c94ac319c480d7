import LockstepKernels
import LockstepModel
import LockstepOptimizer
import Testing

/// The optimizer's bookkeeping over a whole parameter buffer (the update arithmetic itself is checked
/// against PyTorch in LockstepKernelsTests).
@Suite("AdamW optimizer state")
struct AdamWOptimizerStateTests {
    static let layout = ParameterLayout(
        config: GPTConfig(vocabularySize: 16, contextLength: 4, layerCount: 1, headCount: 1, channels: 4))

    @Test func frozenTensorsNeverMoveAndResetClearsTheMoments() {
        let layout = Self.layout
        let frozen = layout.tensors[0]
        let optimizer = AdamWOptimizer(layout: layout) { $0 == frozen ? 0 : 1 }
        #expect(optimizer.learningRateScale(of: frozen) == 0)
        let parameters = UnsafeMutableBufferPointer<Float>.allocate(capacity: layout.count)
        let gradients = UnsafeMutableBufferPointer<Float>.allocate(capacity: layout.count)
        defer {
            parameters.deallocate()
            gradients.deallocate()
        }
        parameters.initialize(repeating: 0.5)
        gradients.initialize(repeating: 0.25)
        optimizer.step(
            parameters: parameters, gradients: gradients, learningRate: 0.1,
            settings: AdamWSettings(beta1: 0.9, beta2: 0.95, epsilon: 1e-8, weightDecay: 0))
        #expect(optimizer.stepCount == 1)
        #expect(parameters[frozen.range].allSatisfy { $0 == 0.5 })
        #expect(optimizer.m[frozen.range].allSatisfy { $0 == 0 })
        let moving = layout.tensors[1]
        #expect(parameters[moving.range].allSatisfy { $0 < 0.5 })
        #expect(optimizer.m[moving.range].allSatisfy { $0 != 0 })
        optimizer.reset()
        #expect(optimizer.stepCount == 0)
        #expect(optimizer.m.allSatisfy { $0 == 0 } && optimizer.v.allSatisfy { $0 == 0 })
    }
}
