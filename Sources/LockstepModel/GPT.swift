import LockstepKernels

/// A decoder-only Transformer of either family (`GPTConfig.family`): token embeddings (plus GPT-2's learned
/// position table), L pre-norm blocks (`TransformerBlock`: norm, causal self-attention, residual, norm, MLP,
/// residual), a final norm, and either the language-model head (tied to the token table or its own) or the
/// sequence-classification head `score` read at each row's last real token.
///
/// Memory is allocated once in `init`: parameters and gradients (same `ParameterLayout`), and activations
/// for `(batchSize, sequenceLength)`. `forward`/`backward` (and `classify`/`backwardClassification`) run on any
/// batch up to `batchSize` without allocating. The class is not thread-safe: one caller at a time.
/// The largest activations are L × `(B, NH, T, T)` attention probabilities and two `(B, T, V)` buffers
/// (logits, kept readable, and probabilities, overwritten by their gradient in backward).
///
/// Dimension letters: B batch, T time, C channels, V vocabulary, L layers, NH heads, K labels (`GPTConfig`).
public final class GPT {
    public let config: GPTConfig
    public let layout: ParameterLayout
    /// Largest B the activations were sized for.
    public let batchSize: Int
    /// T of every batch: token arrays are `(batch, sequenceLength)`.
    public let sequenceLength: Int
    /// All parameters, laid out by `layout`.
    public let parameters: UnsafeMutableBufferPointer<Float>
    /// Gradients in the same layout; `backward` adds into them, `zeroGradients` clears them.
    public let gradients: UnsafeMutableBufferPointer<Float>
    /// Whether this model allocated `parameters` and `gradients` (and frees them), or was lent them.
    private let ownsBuffers: Bool

    private let allocator = Activations.Allocator()
    private let acts: Activations
    /// The blocks, built once from the config's parts.
    let blocks: [TransformerBlock]
    let finalNorm: NormPart

    private enum Pending {
        case none
        case languageModel(batch: Int, counted: Int, dropout: Dropout.Draw?)
        /// `weighted`: `acts.classRowWeights` holds each row's share of the weighted mean.
        case classifier(batch: Int, time: Int, counted: Int, weighted: Bool, dropout: Dropout.Draw?)
    }

    private var pending = Pending.none
    private var lastLanguageModelBatch = 0
    private var lastClassifierBatch = 0

    /// - Parameter storage: buffers of `layout.count` Floats to use for the parameters and gradients, which
    ///   the caller owns and keeps alive (workers of one host share them: `SharedTrainingMemory`); their
    ///   contents are left as they are. Nil: the model allocates its own, zeroed.
    /// - Precondition: `config.problems` is empty, `1 ≤ sequenceLength ≤ contextLength`, `batchSize ≥ 1`, and
    ///   `storage`'s buffers hold `layout.count` Floats.
    public init(
        config: GPTConfig, batchSize: Int, sequenceLength: Int,
        storage: (parameters: UnsafeMutableBufferPointer<Float>, gradients: UnsafeMutableBufferPointer<Float>)? = nil
    ) {
        precondition(config.problems.isEmpty, "invalid GPTConfig: \(config.problems.joined(separator: "; "))")
        precondition(batchSize >= 1, "batchSize must be at least 1")
        precondition(
            (1...config.contextLength).contains(sequenceLength),
            "sequenceLength \(sequenceLength) must be in 1...\(config.contextLength)")
        self.config = config
        self.layout = ParameterLayout(config: config)
        self.batchSize = batchSize
        self.sequenceLength = sequenceLength
        if let storage {
            precondition(
                storage.parameters.count == layout.count && storage.gradients.count == layout.count,
                "storage holds \(storage.parameters.count) and \(storage.gradients.count) Floats, the layout \(layout.count)")
            parameters = storage.parameters
            gradients = storage.gradients
            ownsBuffers = false
        } else {
            parameters = .allocate(capacity: layout.count)
            parameters.initialize(repeating: 0)
            gradients = .allocate(capacity: layout.count)
            gradients.initialize(repeating: 0)
            ownsBuffers = true
        }
        let layout = self.layout
        let rotary = config.family == .llama
            ? RotaryTable(headSize: config.headSize, maxPositions: config.contextLength, theta: config.ropeTheta) : nil
        blocks = layout.blocks.map { TransformerBlock(config: config, layout: layout, block: $0, rotary: rotary) }
        finalNorm = NormPart(parameters: layout.finalNorm, channels: config.channels, eps: config.layerNormEpsilon)
        acts = Activations(
            config: config, block: blocks[0], batch: batchSize, time: sequenceLength, allocator: allocator)
    }

    deinit {
        if ownsBuffers {
            parameters.deallocate()
            gradients.deallocate()
        }
        allocator.deallocate()
    }

    /// Bytes held by activations and backward scratch (parameters and gradients not included).
    public var activationByteCount: Int { allocator.floats * MemoryLayout<Float>.stride }

    /// Logits `(B, T, V)` of the last `forward`, B being that call's batch.
    public var logits: UnsafeBufferPointer<Float> {
        UnsafeBufferPointer(start: acts.logits, count: lastLanguageModelBatch * sequenceLength * config.vocabularySize)
    }

    /// Label logits `(B, K)` of the last `classify`; empty for a language model.
    public var classLogits: UnsafeBufferPointer<Float> {
        UnsafeBufferPointer(start: acts.classLogits, count: lastClassifierBatch * (config.labelCount ?? 0))
    }

    /// Per-label loss weights `(K)` for `classify`, as PyTorch's `CrossEntropyLoss(weight:)`: the loss becomes
    /// `Σ_b w[y_b]·loss_b / Σ_b w[y_b]` over counted rows, so rare labels can count more. nil: every row
    /// counts the same (the plain mean). Read by `classify`; `backwardClassification` uses the weights of the
    /// `classify` before it.
    /// - Precondition: when set, `labelCount` entries, each finite and positive.
    public var classWeights: [Float]? {
        didSet {
            guard let classWeights else { return }
            precondition(
                classWeights.count == config.labelCount ?? 0,
                "classWeights has \(classWeights.count) entries, the model has \(config.labelCount ?? 0) labels")
            for (k, w) in classWeights.enumerated() {
                precondition(w > 0 && w.isFinite, "classWeights[\(k)] = \(w) must be finite and positive")
            }
        }
    }

    public func zeroGradients() {
        ComputeThreads.zero(gradients)
    }

    /// L2 norm of all gradients (accumulated in Double).
    public func gradientNorm() -> Float {
        GradientClipping.globalNorm(gradients.baseAddress!, count: gradients.count)
    }

    /// Scales the gradients so their global norm is at most `maxNorm` (PyTorch's `clip_grad_norm_`).
    /// - Returns: the norm before clipping.
    @discardableResult
    public func clipGradients(maxNorm: Float) -> Float {
        let norm = gradientNorm()
        GradientClipping.clip(gradients.baseAddress!, count: gradients.count, norm: norm, maxNorm: maxNorm)
        return norm
    }

    // MARK: - Language model

    /// Runs the language model on `tokens (batch, T)`.
    /// - Parameters:
    ///   - targets: `(batch, T)` next-token ids, `-100` for positions not to count; nil for logits only.
    ///   - dropout: the masks of a training pass (a fresh draw per micro-batch; `forwardTrunk` says which part
    ///     masks what); nil for none, as evaluation always is.
    /// - Returns: the mean cross-entropy over counted targets (0 when none counts), or NaN when `targets` is
    ///   nil (no loss was computed, and `backward` may not follow).
    @discardableResult
    public func forward(
        tokens: UnsafePointer<Int32>, targets: UnsafePointer<Int32>?, batch: Int, dropout: Dropout.Draw? = nil
    ) -> Float {
        let B = batch, T = sequenceLength, C = config.channels, V = config.vocabularySize
        let N = B * T
        precondition((1...batchSize).contains(batch), "batch \(batch) must be in 1...\(batchSize)")
        forwardTrunk(tokens: tokens, batch: B, time: T, dropout: dropout)

        // LM head (the token table when tied): logits (N, V) = lnf (N, C) · headᵀ.
        let p = parameters.baseAddress!
        Matmul.forward(
            out: acts.logits, input: acts.lnf, weight: p + layout.head, bias: nil, rows: N, inChannels: C,
            outChannels: V, layout: .outputMajor)
        lastLanguageModelBatch = B
        guard let targets else {
            pending = .none
            return .nan
        }
        for i in 0..<N {
            let target = targets[i]
            precondition(target == -100 || (0..<Int32(V)).contains(target), "target \(target) at \(i) is outside 0..<\(V)")
            acts.targets[i] = target
        }
        let (meanLoss, counted) = SoftmaxCrossEntropy.forward(
            losses: acts.losses, probabilities: acts.probabilities, logits: acts.logits, targets: acts.targets, rows: N,
            vocab: V)
        pending = .languageModel(batch: B, counted: counted, dropout: dropout)
        return meanLoss
    }

    /// Adds to `gradients` the gradient of `lossScale × (mean loss of the last forward)`; with
    /// `lossScale = 1 / microSteps` a sum of backward calls gives the gradient of the average over micro-batches.
    /// - Parameter events: told as gradients become final and between kernels (see `BackwardEvents`).
    /// - Precondition: the last call was `forward` with targets.
    public func backward(lossScale: Float = 1, events: BackwardEvents = BackwardEvents()) {
        guard case .languageModel(let B, let counted, let dropout) = pending else {
            preconditionFailure("backward needs a forward with targets just before it")
        }
        pending = .none
        lookupRowCount = 0
        let T = sequenceLength, C = config.channels, V = config.vocabularySize
        let N = B * T
        let p = parameters.baseAddress!, g = gradients.baseAddress!

        // dLogits (N, V), written over the probabilities.
        let scale = counted > 0 ? lossScale / Float(counted) : 0
        SoftmaxCrossEntropy.backward(
            dLogits: acts.probabilities, probabilities: acts.probabilities, targets: acts.targets, rows: N,
            vocab: V, scale: scale)
        acts.scratch.dNormed.update(repeating: 0, count: N * C)
        Matmul.backward(
            dInput: acts.scratch.dNormed, dWeight: g + layout.head, dBias: nil, dOut: acts.probabilities, input: acts.lnf,
            weight: p + layout.head, rows: N, inChannels: C, outChannels: V, layout: .outputMajor)
        events.progress?()
        backwardTrunk(batch: B, time: T, dropout: dropout, events: events)
    }

    // MARK: - Classifier

    /// Runs the classifier on `tokens (batch, time)`, right-padded; `lengths (batch)` counts each row's real
    /// tokens (1...time). The label logits `(batch, K)` come from the hidden state at position `length - 1`.
    /// - Parameters:
    ///   - labels: `(batch)` label ids (`-100` to skip a row), or nil for logits only.
    ///   - time: the rows' length, at most `sequenceLength` (the default). Causal attention makes a row's
    ///     logits independent of what follows its last real token, so a batch of short texts may be cut to its
    ///     longest row: the same logits for less work.
    ///   - dropout: as in `forward`; it also masks the pooled features the head reads.
    /// - Returns: the mean cross-entropy over counted rows (weighted by `classWeights` when set; 0 when no row
    ///   counts), or NaN when `labels` is nil.
    @discardableResult
    public func classify(
        tokens: UnsafePointer<Int32>, lengths: UnsafePointer<Int32>, labels: UnsafePointer<Int32>?, batch: Int,
        time: Int? = nil, dropout: Dropout.Draw? = nil
    ) -> Float {
        guard let K = config.labelCount, let score = layout.score else {
            preconditionFailure("classify needs a model with labelCount")
        }
        let B = batch, T = time ?? sequenceLength, C = config.channels
        precondition((1...batchSize).contains(batch), "batch \(batch) must be in 1...\(batchSize)")
        precondition((1...sequenceLength).contains(T), "time \(T) must be in 1...\(sequenceLength)")
        for b in 0..<B {
            precondition((1...Int32(T)).contains(lengths[b]), "length \(lengths[b]) of row \(b) must be in 1...\(T)")
            acts.lengths[b] = lengths[b]
        }
        forwardTrunk(tokens: tokens, batch: B, time: T, dropout: dropout)

        // score: pooled (B, C) = lnf at each row's last real token; class logits (B, K) = pooled · scoreᵀ.
        LastTokenGather.forward(out: acts.pooled, hidden: acts.lnf, lengths: acts.lengths, batch: B, time: T, channels: C)
        if let dropout { Dropout.forward(acts.pooled, count: B * C, draw: dropout.part(config.layerCount)) }
        Matmul.forward(
            out: acts.classLogits, input: acts.pooled, weight: parameters.baseAddress! + score, bias: nil, rows: B,
            inChannels: C, outChannels: K, layout: .outputMajor)
        lastClassifierBatch = B
        guard let labels else {
            pending = .none
            return .nan
        }
        for b in 0..<B {
            precondition(labels[b] == -100 || (0..<Int32(K)).contains(labels[b]), "label \(labels[b]) of row \(b) is outside 0..<\(K)")
        }
        acts.labels.update(from: labels, count: B)
        let (meanLoss, counted) = SoftmaxCrossEntropy.forward(
            losses: acts.classLosses, probabilities: acts.classProbabilities, logits: acts.classLogits,
            targets: acts.labels, rows: B, vocab: K)
        guard let classWeights else {
            pending = .classifier(batch: B, time: T, counted: counted, weighted: false, dropout: dropout)
            return meanLoss
        }
        // Weighted mean in Double, serially (as the kernel's plain mean); each row's share w[y_b] / Σw is kept
        // for backward, 0 for ignored rows.
        var weightSum = 0.0, weightedLoss = 0.0
        for b in 0..<B where labels[b] != -100 {
            let w = Double(classWeights[Int(labels[b])])
            weightSum += w
            weightedLoss += w * Double(acts.classLosses[b])
        }
        for b in 0..<B {
            acts.classRowWeights[b] = labels[b] == -100 ? 0 : Float(Double(classWeights[Int(labels[b])]) / weightSum)
        }
        pending = .classifier(batch: B, time: T, counted: counted, weighted: true, dropout: dropout)
        return counted == 0 ? 0 : Float(weightedLoss / weightSum)
    }

    /// `backward` for the classifier: adds the gradient of `lossScale × (loss of the last classify)`, the
    /// plain or `classWeights`-weighted mean that `classify` returned.
    /// - Parameters:
    ///   - headOnly: accumulate only `score.weight`'s gradient and skip the trunk's backward entirely (a frozen
    ///     backbone costs no backward pass); the other gradients are left as they are and
    ///     `events` are never told anything.
    ///   - events: as in `backward`.
    /// - Precondition: the last call was `classify` with labels.
    public func backwardClassification(
        lossScale: Float = 1, headOnly: Bool = false, events: BackwardEvents = BackwardEvents()
    ) {
        guard case .classifier(let B, let T, let counted, let weighted, let dropout) = pending, let K = config.labelCount,
            let score = layout.score
        else {
            preconditionFailure("backwardClassification needs a classify with labels just before it")
        }
        pending = .none
        lookupRowCount = 0
        let C = config.channels

        // dLogits (B, K), written over the probabilities: row b scaled by lossScale / counted, or by
        // lossScale · w[y_b] / Σw when weighted.
        if weighted {
            for b in 0..<B {
                SoftmaxCrossEntropy.backward(
                    dLogits: acts.classProbabilities + b &* K, probabilities: acts.classProbabilities + b &* K,
                    targets: acts.labels + b, rows: 1, vocab: K, scale: lossScale * acts.classRowWeights[b])
            }
        } else {
            let scale = counted > 0 ? lossScale / Float(counted) : 0
            SoftmaxCrossEntropy.backward(
                dLogits: acts.classProbabilities, probabilities: acts.classProbabilities, targets: acts.labels, rows: B,
                vocab: K, scale: scale)
        }
        if headOnly {
            Matmul.backward(
                dInput: nil, dWeight: gradients.baseAddress! + score, dBias: nil, dOut: acts.classProbabilities,
                input: acts.pooled, weight: parameters.baseAddress! + score, rows: B, inChannels: C, outChannels: K,
                layout: .outputMajor)
            return
        }
        acts.dPooled.update(repeating: 0, count: B * C)
        Matmul.backward(
            dInput: acts.dPooled, dWeight: gradients.baseAddress! + score, dBias: nil, dOut: acts.classProbabilities,
            input: acts.pooled, weight: parameters.baseAddress! + score, rows: B, inChannels: C, outChannels: K,
            layout: .outputMajor)
        if let dropout { Dropout.backward(acts.dPooled, count: B * C, draw: dropout.part(config.layerCount)) }
        acts.scratch.dNormed.update(repeating: 0, count: B * T * C)
        LastTokenGather.backward(dHidden: acts.scratch.dNormed, dOut: acts.dPooled, lengths: acts.lengths, batch: B, time: T, channels: C)
        backwardTrunk(batch: B, time: T, dropout: dropout, events: events)
    }

    // MARK: - Shared trunk

    /// Embeddings, the L blocks and the final norm: leaves `acts.lnf (B, T, C)`. With `dropout`, block l masks
    /// its branches with `dropout.part(l)`; part L masks a classifier's pooled features.
    private func forwardTrunk(tokens source: UnsafePointer<Int32>, batch B: Int, time T: Int, dropout: Dropout.Draw?) {
        let C = config.channels, V = Int32(config.vocabularySize)
        let N = B * T
        for i in 0..<N {
            let token = source[i]
            precondition(token >= 0 && token < V, "token \(token) at \(i) is outside the vocabulary 0..<\(V)")
            acts.tokens[i] = token
        }
        let p = UnsafePointer(parameters.baseAddress!)
        Embedding.forward(
            out: acts.encoded, tokens: acts.tokens, wte: p + layout.wte, wpe: layout.wpe.map { p + $0 }, batch: B,
            time: T, channels: C)
        var residual = UnsafePointer(acts.encoded)
        for (l, (block, a)) in zip(blocks, acts.layers).enumerated() {
            block.forward(
                a, residual: residual, projection: acts.projection, p: p, batch: B, time: T, dropout: dropout?.part(l))
            residual = UnsafePointer(a.residual3)
        }
        finalNorm.forward(out: acts.lnf, mean: acts.lnfMean, rstd: acts.lnfRstd, input: residual, p: p, rows: N)
    }

    /// The trunk's backward, from `acts.scratch.dNormed` holding dL/d(final norm output) `(B, T, C)` down to
    /// the embeddings. The residual stream's gradient lives in one buffer, `scratch.dResidual`.
    private func backwardTrunk(batch B: Int, time T: Int, dropout: Dropout.Draw?, events: BackwardEvents) {
        let C = config.channels
        let N = B * T
        let p = UnsafePointer(parameters.baseAddress!), g = gradients.baseAddress!
        let L = config.layerCount
        let dResidual = acts.scratch.dResidual

        dResidual.update(repeating: 0, count: N * C)
        finalNorm.backward(
            dInput: dResidual, dOut: acts.scratch.dNormed, input: acts.layers[L - 1].residual3, mean: acts.lnfMean,
            rstd: acts.lnfRstd, p: p, g: g, rows: N)
        events.headReady?()
        for l in stride(from: L - 1, through: 0, by: -1) {
            let residual = UnsafePointer(l == 0 ? acts.encoded : acts.layers[l - 1].residual3)
            blocks[l].backward(
                acts.layers[l], residual: residual, scratch: acts.scratch, p: p, g: g, batch: B, time: T,
                dropout: dropout?.part(l), progress: events.progress)
            events.blockReady?(l)
        }
        if let pad = config.embeddingPaddingToken {
            for n in 0..<N where acts.tokens[n] == pad { (dResidual + n * C).update(repeating: 0, count: C) }
        }
        lookupRowCount = events.defersTokenLookup ? N : 0
        Embedding.backward(
            dWte: events.defersTokenLookup ? nil : g + layout.wte, dWpe: layout.wpe.map { g + $0 }, dOut: dResidual,
            tokens: acts.tokens, batch: B, time: T, channels: C)
    }

    /// Rows of the last backward's token-lookup gradient that `BackwardEvents.defersTokenLookup` left out of
    /// `gradients`: 0 when it did not defer.
    private var lookupRowCount = 0

    /// The token-lookup share of `wte`'s gradient that the last backward left out (`defersTokenLookup`): `tokens
    /// (n)` and `rows (n, C)`, row i to be added to `wte`'s gradient at row `tokens[i]`
    /// (`Embedding.backward` with no `dWpe` does that). Both empty when it did not defer; valid until the next
    /// forward.
    public var deferredTokenLookup: (tokens: UnsafeBufferPointer<Int32>, rows: UnsafeBufferPointer<Float>) {
        (UnsafeBufferPointer(start: acts.tokens, count: lookupRowCount),
         UnsafeBufferPointer(start: acts.scratch.dResidual, count: lookupRowCount * config.channels))
    }
}

/// What backward tells its caller while it runs, so that averaging gradients over replicas can start, and
/// progress, while backward still computes. Every member is optional; the default tells nothing.
public struct BackwardEvents {
    /// The head's and `ln_f`'s gradients are final, and `wte`'s too when `defersTokenLookup` is set (the tied
    /// head's share is added; the token lookup's is left out): called once, before the first block's backward.
    public var headReady: (() -> Void)?
    /// Block `l`'s parameter gradients are final; called for l = L-1 down to 0.
    public var blockReady: ((Int) -> Void)?
    /// Called between the kernels of backward: a moment for communication in flight to progress.
    public var progress: (() -> Void)?
    /// Leave the token lookup's share of `wte`'s gradient out of `gradients` and keep it in
    /// `GPT.deferredTokenLookup`: n rows of C instead of the whole `(V, C)` table, so that replicas can exchange
    /// it in a fraction of the bytes after sending the rest of `wte` early. `wpe`'s gradient is still final
    /// only on return.
    public var defersTokenLookup: Bool

    public init(
        headReady: (() -> Void)? = nil, blockReady: ((Int) -> Void)? = nil, progress: (() -> Void)? = nil,
        defersTokenLookup: Bool = false
    ) {
        self.headReady = headReady
        self.blockReady = blockReady
        self.progress = progress
        self.defersTokenLookup = defersTokenLookup
    }
}

// MARK: - Activations

/// Named views into the one activation buffer, sized for the largest batch.
private struct Activations {
    /// Hands out zeroed buffers and remembers them for `deallocate`.
    final class Allocator {
        private(set) var buffers: [UnsafeMutableRawPointer] = []
        private(set) var floats = 0

        func take<Element: BitwiseCopyable>(_ count: Int, as type: Element.Type = Float.self) -> UnsafeMutablePointer<Element> {
            let pointer = UnsafeMutablePointer<Element>.allocate(capacity: max(count, 1))
            UnsafeMutableRawPointer(pointer).initializeMemory(as: UInt8.self, repeating: 0, count: max(count, 1) * MemoryLayout<Element>.stride)
            buffers.append(UnsafeMutableRawPointer(pointer))
            floats += count
            return pointer
        }

        func deallocate() {
            for buffer in buffers { buffer.deallocate() }
            buffers = []
        }
    }

    var encoded: UnsafeMutablePointer<Float>
    var layers: [LayerActivations]
    var lnf, lnfMean, lnfRstd: UnsafeMutablePointer<Float>
    /// Output of either projection `(B, T, C)`, before its residual add; not needed by backward.
    var projection: UnsafeMutablePointer<Float>
    /// `(B, T, V)`; probabilities are later overwritten by dLogits.
    var logits, probabilities, losses: UnsafeMutablePointer<Float>
    /// `(B, T)` copies of the tokens and targets, for backward.
    var tokens, targets: UnsafeMutablePointer<Int32>
    /// Classifier: `pooled (B, C)`, `classLogits, classProbabilities (B, K)`, `classLosses (B)`.
    var pooled, classLogits, classProbabilities, classLosses: UnsafeMutablePointer<Float>
    /// `(B)` copies of the classifier's inputs.
    var lengths, labels: UnsafeMutablePointer<Int32>
    /// `(B)` each row's share `w[y_b] / Σw` of a weighted classifier loss (0 for ignored rows).
    var classRowWeights: UnsafeMutablePointer<Float>
    /// Backward's buffers, shared by the blocks; `dPooled (B, C)` for the classifier head.
    var scratch: BackwardScratch
    var dPooled: UnsafeMutablePointer<Float>

    /// - Parameter block: any block (all have the same shapes), for the widths of its activations.
    init(config: GPTConfig, block: TransformerBlock, batch B: Int, time T: Int, allocator plan: Allocator) {
        let C = config.channels, NH = config.headCount, V = config.vocabularySize, K = config.labelCount ?? 0
        let N = B * T
        let qkvWidth = block.attention.qkvWidth, fcWidth = block.mlp.fcWidth, I = block.mlp.width
        encoded = plan.take(N * C)
        layers = (0..<config.layerCount).map { _ in
            LayerActivations(
                norm1: plan.take(N * C), norm1Mean: plan.take(N), norm1Rstd: plan.take(N), qkv: plan.take(N * qkvWidth),
                attentionProbabilities: plan.take(B * NH * T * T), attention: plan.take(N * C),
                residual2: plan.take(N * C), norm2: plan.take(N * C), norm2Mean: plan.take(N), norm2Rstd: plan.take(N),
                fc: plan.take(N * fcWidth), fcActivated: plan.take(N * I), residual3: plan.take(N * C))
        }
        lnf = plan.take(N * C)
        lnfMean = plan.take(N)
        lnfRstd = plan.take(N)
        projection = plan.take(N * C)
        logits = plan.take(N * V)
        probabilities = plan.take(N * V)
        losses = plan.take(N)
        tokens = plan.take(N, as: Int32.self)
        targets = plan.take(N, as: Int32.self)
        pooled = plan.take(B * C)
        classLogits = plan.take(B * K)
        classProbabilities = plan.take(B * K)
        classLosses = plan.take(B)
        lengths = plan.take(B, as: Int32.self)
        labels = plan.take(B, as: Int32.self)
        classRowWeights = plan.take(B)
        scratch = BackwardScratch(
            dResidual: plan.take(N * C), dNormed: plan.take(N * C), dAttention: plan.take(N * C),
            dQKV: plan.take(N * qkvWidth), dFc: plan.take(N * fcWidth), dActivated: plan.take(N * I),
            attentionScratch: plan.take(B * NH * T * T), dBranch: plan.take(N * C))
        dPooled = plan.take(B * C)
    }
}
