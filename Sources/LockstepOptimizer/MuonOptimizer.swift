import LockstepKernels
import LockstepModel

/// Muon's hyperparameters (`optimizer.muon_*`); weight decay is `optimizer.weight_decay`, as AdamW's.
public struct MuonSettings: Sendable, Equatable {
    /// Muon's peak learning rate: its rate at step t is `learningRate × schedule(t) / scheduleLearningRate`.
    public var learningRate: Double
    /// The schedule's peak (`schedule.learning_rate`), which the scheduled rate is measured against; 0 makes
    /// Muon's rate 0 (nothing learns at a schedule of 0).
    public var scheduleLearningRate: Double
    public var momentum: Double
    public var weightDecay: Double

    public init(learningRate: Double = 0.02, scheduleLearningRate: Double, momentum: Double = 0.95, weightDecay: Double = 0.1) {
        self.learningRate = learningRate
        self.scheduleLearningRate = scheduleLearningRate
        self.momentum = momentum
        self.weightDecay = weightDecay
    }

    /// Muon's rate when the schedule gives `scheduled`.
    func rate(scheduled: Double) -> Double {
        scheduleLearningRate > 0 ? scheduled * learningRate / scheduleLearningRate : 0
    }
}

/// Muon (`torch.optim.Muon`'s algorithm, in Float) on every matrix inside the blocks (`ParameterRole.isBlockMatrix`),
/// AdamW on the other tensors (embeddings, heads, norms, biases). Per matrix, from the clipped mean gradient g:
///
///     buf ← buf.lerp(g, 1 − μ)                 momentum, in `m` at the matrix's own offsets
///     u   ← g.lerp(buf, μ)                     Nesterov
///     X   ← NewtonSchulz(u)                    as the (out, in) matrix
///     p   ← p · (1 − lr·wd) − lr · √max(1, out/in) · X
///
/// State: the momentum buffers live in the AdamW first moments `m` at the matrices' offsets (AdamW never
/// touches those tensors here), the second moments stay 0 there, so a checkpoint has the same two buffers as
/// an AdamW run's.
///
/// Several workers split the Newton–Schulz work: every worker updates all momentum buffers (cheap, the same
/// numbers everywhere), orthogonalises only the matrices `owners` assigns it, writes them into its part of
/// one packed buffer, and the workers all-gather that buffer (`UpdateExchange.shareParts`: copies, no
/// arithmetic); then every worker applies every update, so the parameters stay bit-identical across workers
/// and equal to a lone worker's on the same gradient sum.
public final class MuonOptimizer: Optimizer {
    /// One orthogonalised matrix: where it lives and how the kernel sees it.
    struct Matrix {
        var tensor: ParameterTensor
        /// Stored shape, row-major `(rows, columns)`.
        var rows: Int, columns: Int
        /// The Gram matrix PyTorch's orientation forms: its (out, in) matrix, transposed when out > in.
        var gram: NewtonSchulz.Gram
        /// `√max(1, out/in)`.
        var shapeScale: Double
        var learningRateScale: Double
        var owner: Int
        /// Offset in the packed update buffer.
        var packedOffset: Int
    }

    /// AdamW over the tensors Muon leaves (Muon's matrices at learning-rate scale 0), holding `m` and `v`.
    public let adamW: AdamWOptimizer
    public let settings: MuonSettings
    let exchange: any UpdateExchange
    let matrices: [Matrix]
    /// Elements of the packed buffer each worker fills.
    let partCounts: [Int]
    /// Every matrix's update, packed worker part by worker part (`partCounts`), each part in layout order.
    private let packed: UnsafeMutableBufferPointer<Float>
    /// Newton–Schulz scratch for the largest matrix this worker orthogonalises.
    private let workspace: UnsafeMutableBufferPointer<Float>

    public var layout: ParameterLayout { adamW.layout }
    public var shard: Range<Int> { adamW.shard }
    public var m: UnsafeMutableBufferPointer<Float> { adamW.m }
    public var v: UnsafeMutableBufferPointer<Float> { adamW.v }
    public var stepCount: Int {
        get { adamW.stepCount }
        set { adamW.stepCount = newValue }
    }

    /// - Parameters:
    ///   - learningRateScale: each tensor's factor on the learning rate (0 freezes it), for Muon's rate and
    ///     AdamW's alike.
    ///   - exchange: the workers that update these parameters together (`SoleWorker` for one).
    /// - Precondition: every scale is finite and ≥ 0 (they come from code).
    public init(
        layout: ParameterLayout, settings: MuonSettings, exchange: any UpdateExchange = SoleWorker(),
        learningRateScale: (ParameterTensor) -> Float = { _ in 1 }
    ) {
        let scales = layout.tensors.map(learningRateScale)
        var candidates: [Matrix] = []
        for (tensor, scale) in zip(layout.tensors, scales) where tensor.role.isBlockMatrix && scale > 0 {
            guard let linear = layout.linearShape(tensor) else { continue }
            let rows = tensor.shape[0], columns = tensor.shape[1]
            // PyTorch works on (out, in), transposed when out > in: that is the stored matrix or its transpose.
            let workingIsStored = (linear.outputs > linear.inputs) != (layout.linearLayout == .outputMajor)
            candidates.append(Matrix(
                tensor: tensor, rows: rows, columns: columns, gram: workingIsStored ? .rows : .columns,
                shapeScale: max(1, Double(linear.outputs) / Double(linear.inputs)).squareRoot(),
                learningRateScale: Double(scale), owner: 0, packedOffset: 0))
        }
        let owners = Self.owners(
            costs: candidates.map { $0.rows * $0.columns * min($0.rows, $0.columns) }, workers: exchange.replicaCount)
        var partCounts = [Int](repeating: 0, count: exchange.replicaCount)
        for (i, owner) in owners.enumerated() {
            candidates[i].owner = owner
            partCounts[owner] += candidates[i].tensor.count
        }
        var partStarts = [Int](repeating: 0, count: partCounts.count)
        for w in partCounts.indices.dropFirst() { partStarts[w] = partStarts[w - 1] + partCounts[w - 1] }
        var workspaceCount = 1
        for i in candidates.indices {
            let owner = candidates[i].owner
            candidates[i].packedOffset = partStarts[owner]
            partStarts[owner] += candidates[i].tensor.count
            if owner == exchange.replicaIndex {
                let c = candidates[i]
                workspaceCount = max(workspaceCount, NewtonSchulz.workspaceCount(rows: c.rows, columns: c.columns, gram: c.gram))
            }
        }
        let muonTensors = Set(candidates.map(\.tensor.offset))
        adamW = AdamWOptimizer(layout: layout) { tensor in
            muonTensors.contains(tensor.offset) ? 0 : learningRateScale(tensor)
        }
        self.settings = settings
        self.exchange = exchange
        self.matrices = candidates
        self.partCounts = partCounts
        let packedCount = partCounts.reduce(0, +)
        packed = UnsafeMutableBufferPointer(start: .allocate(capacity: max(1, packedCount)), count: packedCount)
        packed.initialize(repeating: 0)
        workspace = UnsafeMutableBufferPointer(start: .allocate(capacity: workspaceCount), count: workspaceCount)
        workspace.initialize(repeating: 0)
    }

    deinit {
        packed.baseAddress?.deallocate()
        workspace.baseAddress?.deallocate()
    }

    /// Which worker orthogonalises each matrix, given its cost (rows·columns·min(rows, columns), the
    /// Newton–Schulz flops up to a constant): the most expensive first, each to the least loaded worker (the
    /// lowest index among equals). A function of the costs and the worker count only, so every worker
    /// computes the same assignment.
    public static func owners(costs: [Int], workers: Int) -> [Int] {
        let workers = max(1, workers)
        var load = [Int](repeating: 0, count: workers)
        var owners = [Int](repeating: 0, count: costs.count)
        let order = costs.indices.sorted { costs[$0] != costs[$1] ? costs[$0] > costs[$1] : $0 < $1 }
        for i in order {
            var best = 0
            for w in 1..<workers where load[w] < load[best] { best = w }
            owners[i] = best
            load[best] += costs[i]
        }
        return owners
    }

    /// The names of the tensors Muon updates, in layout order.
    public var muonTensorNames: [String] { matrices.map(\.tensor.name) }

    public func reset() { adamW.reset() }

    public func step(
        parameters: UnsafeMutableBufferPointer<Float>, gradientSum: UnsafeMutableBufferPointer<Float>, norm: Float,
        meanFactor: Float, maxNorm: Float, scheduledLearningRate: Double, settings adamSettings: AdamWSettings
    ) throws {
        precondition(
            parameters.count == layout.count && gradientSum.count == layout.count, "Muon: buffers do not match the layout")
        adamW.step(
            parameters: parameters, gradientSum: gradientSum, norm: norm, meanFactor: meanFactor, maxNorm: maxNorm,
            learningRate: Float(scheduledLearningRate), settings: adamSettings)
        guard let p = parameters.baseAddress, let g = gradientSum.baseAddress, let buffers = m.baseAddress,
            let packed = packed.baseAddress, let workspace = workspace.baseAddress
        else { return }
        let gradientScale = (maxNorm > 0 ? GradientClipping.factor(norm: norm, maxNorm: maxNorm) : 1) * meanFactor
        let momentumWeight = Float(1 - settings.momentum), nesterovWeight = Float(settings.momentum)
        let me = exchange.replicaIndex
        for matrix in matrices {
            let momentum = buffers + matrix.tensor.offset, gradient = g + matrix.tensor.offset
            let update = packed + matrix.packedOffset, mine = matrix.owner == me
            for i in 0..<matrix.tensor.count {
                let gi = gradient[i] * gradientScale
                let b = Self.lerp(momentum[i], gi, momentumWeight)
                momentum[i] = b
                if mine { update[i] = Self.lerp(gi, b, nesterovWeight) }
            }
            if mine {
                NewtonSchulz.orthogonalize(
                    update, rows: matrix.rows, columns: matrix.columns, gram: matrix.gram, workspace: workspace)
            }
        }
        try exchange.shareParts(self.packed, counts: partCounts)
        let baseRate = settings.rate(scheduled: scheduledLearningRate)
        for matrix in matrices {
            let rate = baseRate * matrix.learningRateScale
            let decay = Float(1 - rate * settings.weightDecay), alpha = Float(-rate * matrix.shapeScale)
            let weights = p + matrix.tensor.offset, update = packed + matrix.packedOffset
            for i in 0..<matrix.tensor.count {
                weights[i] = (weights[i] * decay).addingProduct(alpha, update[i])
            }
        }
    }

    /// `start.lerp(end, weight)` as PyTorch's CPU kernel computes it: `start + w·(end − start)` for |w| < 0.5,
    /// else `end + (w − 1)·(end − start)`, each one fused multiply-add.
    @inline(__always)
    static func lerp(_ start: Float, _ end: Float, _ weight: Float) -> Float {
        abs(weight) < 0.5 ? start.addingProduct(weight, end - start) : end.addingProduct(weight - 1, end - start)
    }
}
