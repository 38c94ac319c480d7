import LockstepKernels

/// AdamW over a whole parameter buffer, as PyTorch's `torch.optim.AdamW` with two parameter groups: weight
/// decay on tensors that `ParameterLayout.decays` selects (matrices), none on biases and LayerNorm.
///
/// The moments `m`, `v` use the parameters' layout, so checkpoints and broadcasts handle them as whole buffers.
public final class AdamWOptimizer {
    public let layout: ParameterLayout
    /// First moments, same layout as the parameters.
    public let m: UnsafeMutableBufferPointer<Float>
    /// Second moments, same layout as the parameters.
    public let v: UnsafeMutableBufferPointer<Float>
    /// Steps taken so far; the next `step` uses `stepCount + 1` for bias correction. Restored from checkpoints.
    public var stepCount = 0
    /// Maximal runs of consecutive tensors that share a decay setting, so a step is a few kernel calls.
    private let groups: [(range: Range<Int>, decays: Bool)]

    public init(layout: ParameterLayout) {
        self.layout = layout
        m = .allocate(capacity: layout.count)
        m.initialize(repeating: 0)
        v = .allocate(capacity: layout.count)
        v.initialize(repeating: 0)
        var groups: [(range: Range<Int>, decays: Bool)] = []
        for tensor in layout.tensors {
            let decays = layout.decays(tensor)
            if let last = groups.last, last.decays == decays, last.range.upperBound == tensor.offset {
                groups[groups.count - 1].range = last.range.lowerBound..<tensor.range.upperBound
            } else {
                groups.append((tensor.range, decays))
            }
        }
        self.groups = groups
    }

    deinit {
        m.deallocate()
        v.deallocate()
    }

    /// Clears the moments and the step count (a fresh optimizer).
    public func reset() {
        m.update(repeating: 0)
        v.update(repeating: 0)
        stepCount = 0
    }

    /// One AdamW update of every parameter in place.
    /// - Precondition: both buffers have `layout.count` elements.
    public func step(
        parameters: UnsafeMutableBufferPointer<Float>, gradients: UnsafeMutableBufferPointer<Float>,
        learningRate: Float, settings: AdamWSettings
    ) {
        precondition(parameters.count == layout.count && gradients.count == layout.count, "buffers do not match the layout")
        stepCount += 1
        let p = parameters.baseAddress!, g = gradients.baseAddress!, m = m.baseAddress!, v = v.baseAddress!
        for group in groups {
            let offset = group.range.lowerBound
            AdamW.update(
                parameters: p + offset, gradients: g + offset, m: m + offset, v: v + offset, count: group.range.count,
                step: stepCount, learningRate: learningRate, settings: settings, applyWeightDecay: group.decays)
        }
    }
}
