import Foundation
import LockstepFormats
import LockstepKernels
import LockstepTestSupport
import Testing

@testable import LockstepModel
import LockstepOptimizer

/// The model against PyTorch's numbers in ../shared/reference/gpt2-tiny and, for logits, loss and gradients of
/// the language model and the classifier, ../shared/reference/llama-tiny (see its README and
/// `LlamaReferenceTests`).
///
/// Errors are relative with a floor of 1% of the tensor's largest magnitude (`scaledError`), so entries near
/// zero are judged against the tensor's scale rather than their own. Tolerances: logits and loss 1e-5,
/// gradients 1e-4; after 10 AdamW steps, losses 1e-5, gradient norms 1e-4, parameters 1e-5 absolute.
@Suite struct ReferenceTests {
    static let lmDirectory = SharedFiles.reference.appendingPathComponent("lm")
    static let classifierDirectory = SharedFiles.reference.appendingPathComponent("classifier")

    /// A reference directory with a language model and a classifier: GPT-2 (`gpt2-tiny`) and Llama
    /// (`llama-tiny`, see `LlamaReferenceTests`).
    struct Reference: Sendable, CustomTestStringConvertible {
        let name: String
        let directory: URL
        /// Llama's logits get 2e-5: on that model PyTorch's own float32 logits are 1.21e-5 from the same model
        /// in float64 by this measure (transformers with torch.float64; the worst entry is a logit of 0.0047
        /// near the 1% floor, off by 6.5e-8), where ours agree with float64 to 1.4e-5. No float32
        /// implementation can be held to 1e-5 of PyTorch's rounding there; the loss is.
        let logitsTolerance: Double
        var lm: URL { directory.appendingPathComponent("lm") }
        var classifier: URL { directory.appendingPathComponent("classifier") }
        var testDescription: String { name }

        static let all = [
            Reference(name: "gpt2-tiny", directory: SharedFiles.reference, logitsTolerance: 1e-5),
            Reference(
                name: "llama-tiny", directory: SharedFiles.shared.appendingPathComponent("reference/llama-tiny"),
                logitsTolerance: 2e-5),
        ]
    }

    /// Largest `|a − e| / max(|e|, 0.01 · max|e|)` over the tensor.
    static func scaledError(_ actual: some Collection<Float>, _ expected: [Float]) -> Double {
        let largest = expected.reduce(0) { max($0, abs(Double($1))) }
        return maxRelativeError(Array(actual), expected.doubles, floor: max(0.01 * largest, 1e-12))
    }

    static func loadModel(_ directory: URL, batch: Int, time: Int) throws -> GPT {
        let config = try HuggingFaceModel.loadConfig(directory: directory)
        let model = GPT(config: config, batchSize: batch, sequenceLength: time)
        try HuggingFaceModel.load(directory: directory, into: model)
        return model
    }

    /// Worst error over every parameter's gradient against `grad.<name>`, and the tensor where it occurs.
    static func worstGradientError(_ model: GPT, _ expected: SafeTensors) throws -> (Double, String) {
        var worst = (0.0, "")
        for tensor in model.layout.tensors {
            let error = scaledError(model.gradients[tensor.range], try expected.floats(named: "grad." + tensor.name))
            if error > worst.0 { worst = (error, tensor.name) }
        }
        return worst
    }

    @Test(.requires(.shared(Self.lmDirectory)), arguments: Reference.all)
    func languageModelLogitsLossAndGradients(reference: Reference) throws {
        try TestEnvironment.require(.shared(reference.lm))
        let expected = try SafeTensorsFile.read(reference.lm.appendingPathComponent("expected.safetensors"))
        let tokens = try expected.int32s(named: "input_ids"), targets = try expected.int32s(named: "targets")
        let model = try Self.loadModel(reference.lm, batch: 2, time: 16)

        let loss = model.forward(tokens: tokens, targets: targets, batch: 2)
        let expectedLoss = try expected.floats(named: "loss")[0]
        let logitsError = Self.scaledError(model.logits, try expected.floats(named: "logits"))
        let lossError = abs(Double(loss - expectedLoss)) / Double(expectedLoss)
        print("\(reference.name) LM: logits error \(logitsError), loss \(loss) vs \(expectedLoss) (relative \(lossError))")
        #expect(logitsError < reference.logitsTolerance)
        #expect(lossError < 1e-5)

        model.zeroGradients()
        model.backward()
        let (gradientError, worstTensor) = try Self.worstGradientError(model, expected)
        print("\(reference.name) LM: worst gradient error \(gradientError) in \(worstTensor)")
        #expect(gradientError < 1e-4, "worst in \(worstTensor)")
    }

    /// The reference's 10 AdamW steps on its one batch (lr 1e-3, betas 0.9/0.95, eps 1e-8, weight decay 0.1,
    /// clip 1.0) from the language model in `directory`: the model after them, and the errors of the losses
    /// and gradient norms against `train_losses` and `train_grad_norms`.
    static func tenAdamWSteps(_ directory: URL, _ expected: SafeTensors) throws
        -> (model: GPT, lossError: Double, normError: Double)
    {
        let tokens = try expected.int32s(named: "input_ids"), targets = try expected.int32s(named: "targets")
        let model = try loadModel(directory, batch: 2, time: 16)
        let optimizer = AdamWOptimizer(layout: model.layout)
        let settings = AdamWSettings(beta1: 0.9, beta2: 0.95, epsilon: 1e-8, weightDecay: 0.1)
        var losses: [Float] = [], norms: [Float] = []
        for _ in 0..<10 {
            model.zeroGradients()
            losses.append(model.forward(tokens: tokens, targets: targets, batch: 2))
            model.backward()
            norms.append(model.clipGradients(maxNorm: 1.0))
            optimizer.step(parameters: model.parameters, gradients: model.gradients, learningRate: 1e-3, settings: settings)
        }
        #expect(optimizer.stepCount == 10)
        return (model,
                maxRelativeError(losses, try expected.floats(named: "train_losses").doubles, floor: 1e-3),
                maxRelativeError(norms, try expected.floats(named: "train_grad_norms").doubles, floor: 1e-3))
    }

    @Test(.requires(.shared(Self.lmDirectory))) func tenAdamWSteps() throws {
        try TestEnvironment.require(.shared(Self.lmDirectory))
        let expected = try SafeTensorsFile.read(Self.lmDirectory.appendingPathComponent("expected.safetensors"))
        let (model, lossError, normError) = try Self.tenAdamWSteps(Self.lmDirectory, expected)
        // Parameters are compared in absolute terms against the distance AdamW can move one in 10 steps
        // (about 10 · lr = 1e-2): entries whose gradient is near zero (1e-10 against 1e-2 elsewhere) get
        // Adam steps driven by rounding, so a relative error means nothing for them. Required: within 1e-5,
        // a thousandth of that distance. The key third of each c_attn.bias has an exactly zero gradient
        // (adding a constant to every key shifts a softmax row uniformly), so PyTorch's values and ours are
        // rounding noise turned into updates of random sign: they are only checked to stay near 0.
        let C = model.config.channels
        var parameterError = (0.0, ""), absoluteError: Float = 0, keyBiasDrift: Float = 0
        for tensor in model.layout.tensors {
            var actual = Array(model.parameters[tensor.range])
            var reference = try expected.floats(named: "after_training." + tensor.name)
            if tensor.name.hasSuffix("attn.c_attn.bias") {
                keyBiasDrift = max(keyBiasDrift, actual[C..<(2 * C)].map(abs).max()!, reference[C..<(2 * C)].map(abs).max()!)
                actual.removeSubrange(C..<(2 * C))
                reference.removeSubrange(C..<(2 * C))
            }
            let error = Self.scaledError(actual, reference)
            if error > parameterError.0 { parameterError = (error, tensor.name) }
            absoluteError = max(absoluteError, zip(actual, reference).map { abs($0 - $1) }.max()!)
        }
        print("AdamW reference: losses \(lossError), grad norms \(normError), parameters \(absoluteError) absolute (\(parameterError.0) relative to 1% of each tensor's largest, in \(parameterError.1)), key-bias drift \(keyBiasDrift)")
        #expect(lossError < 1e-5)
        #expect(normError < 1e-4)
        #expect(absoluteError < 1e-5)
        #expect(keyBiasDrift < 1e-4)
    }

    @Test(.requires(.shared(Self.classifierDirectory)), arguments: Reference.all)
    func classifierLogitsLossAndGradients(reference: Reference) throws {
        try TestEnvironment.require(.shared(reference.classifier))
        let expected = try SafeTensorsFile.read(reference.classifier.appendingPathComponent("expected.safetensors"))
        let tokens = try expected.int32s(named: "input_ids"), lengths = try expected.int32s(named: "lengths")
        let labels = try expected.int32s(named: "labels")
        let model = try Self.loadModel(reference.classifier, batch: 4, time: 16)
        #expect(model.config.labelCount == 3)

        let loss = model.classify(tokens: tokens, lengths: lengths, labels: labels, batch: 4)
        let expectedLoss = try expected.floats(named: "loss")[0]
        let logitsError = Self.scaledError(model.classLogits, try expected.floats(named: "logits"))
        let lossError = abs(Double(loss - expectedLoss)) / Double(expectedLoss)
        print("\(reference.name) classifier: logits error \(logitsError), loss \(loss) vs \(expectedLoss) (relative \(lossError))")
        #expect(logitsError < reference.logitsTolerance)
        #expect(lossError < 1e-5)

        model.zeroGradients()
        model.backwardClassification()
        let (gradientError, worstTensor) = try Self.worstGradientError(model, expected)
        print("\(reference.name) classifier: worst gradient error \(gradientError) in \(worstTensor)")
        #expect(gradientError < 1e-4, "worst in \(worstTensor)")
    }

    /// Two half-scaled backward passes over one row each give the gradient of the two-row batch
    /// (every row counts the same number of targets), and the callback sees each block's final gradients.
    @Test func gradientAccumulationAndBlockCallbacks() throws {
        let config = GPTConfig(vocabularySize: 40, contextLength: 12, layerCount: 3, headCount: 2, channels: 16)
        let model = GPT(config: config, batchSize: 2, sequenceLength: 12)
        model.initializeRandomly(seed: 11)
        var random = TestRandom(seed: 5)
        let tokens = (0..<24).map { _ in Int32(random.int(below: 40)) }
        let targets = (0..<24).map { _ in Int32(random.int(below: 40)) }

        model.zeroGradients()
        let fullLoss = model.forward(tokens: tokens, targets: targets, batch: 2)
        var order: [Int] = []
        var snapshots: [Int: [Float]] = [:]
        var progressCalls = 0
        model.backward(
            events: BackwardEvents(
                headReady: { order.append(-1) },
                blockReady: { block in
                    order.append(block)
                    snapshots[block] = Array(model.gradients[model.layout.blockRange(block)])
                },
                progress: { progressCalls += 1 }))
        #expect(order == [-1, 2, 1, 0])
        #expect(progressCalls >= 3 * 4, "progress is told between the kernels of every block")
        for block in 0..<3 {
            #expect(snapshots[block] == Array(model.gradients[model.layout.blockRange(block)]), "block \(block)")
        }
        let full = Array(model.gradients)

        model.zeroGradients()
        var halfLosses: [Float] = []
        for row in 0..<2 {
            let rowTokens = Array(tokens[(row * 12)..<(row * 12 + 12)]), rowTargets = Array(targets[(row * 12)..<(row * 12 + 12)])
            halfLosses.append(model.forward(tokens: rowTokens, targets: rowTargets, batch: 1))
            model.backward(lossScale: 0.5)
        }
        #expect(abs((halfLosses[0] + halfLosses[1]) / 2 - fullLoss) < 1e-5)
        let accumulatedError = maxRelativeError(Array(model.gradients), full.doubles, floor: 1e-3)
        print("Accumulation: gradients differ by \(accumulatedError) relative")
        #expect(accumulatedError < 1e-4)
    }

    /// A backward that defers the token lookup leaves exactly that share out of `wte`'s gradient (everything
    /// else the same bits, `wte` final at `headReady`), and adding `deferredTokenLookup` back gives the same
    /// bits as a backward that did not defer, for the language model and the classifier.
    @Test func deferredTokenLookupAddsBackToTheSameGradient() throws {
        let config = GPTConfig(vocabularySize: 40, contextLength: 12, layerCount: 2, headCount: 2, channels: 16, labelCount: 3)
        let model = GPT(config: config, batchSize: 2, sequenceLength: 12)
        model.initializeRandomly(seed: 4)
        var random = TestRandom(seed: 8)
        let tokens = (0..<24).map { _ in Int32(random.int(below: 40)) }
        let targets = (0..<24).map { _ in Int32(random.int(below: 40)) }
        let lengths: [Int32] = [12, 7], labels: [Int32] = [2, 0]
        let wte = model.layout.wte..<(model.layout.wte + 40 * 16)

        for task in ["language model", "classifier"] {
            func run(_ events: BackwardEvents) {
                model.zeroGradients()
                if task == "language model" {
                    model.forward(tokens: tokens, targets: targets, batch: 2)
                    model.backward(events: events)
                } else {
                    model.classify(tokens: tokens, lengths: lengths, labels: labels, batch: 2)
                    model.backwardClassification(events: events)
                }
            }
            run(BackwardEvents())
            let full = Array(model.gradients)
            #expect(model.deferredTokenLookup.tokens.isEmpty, "\(task): nothing deferred")

            var wteAtHead: [Float] = []
            run(BackwardEvents(headReady: { wteAtHead = Array(model.gradients[wte]) }, defersTokenLookup: true))
            #expect(wteAtHead == Array(model.gradients[wte]), "\(task): wte is final at headReady")
            #expect(Array(model.gradients[wte.upperBound...]) == Array(full[wte.upperBound...]), "\(task)")
            #expect(Array(model.gradients[wte]) != Array(full[wte]), "\(task): the lookup share is left out")
            let (deferredTokens, rows) = model.deferredTokenLookup
            #expect(Array(deferredTokens) == tokens, "\(task)")
            Embedding.backward(
                dWte: model.gradients.baseAddress! + model.layout.wte, dWpe: nil, dOut: rows.baseAddress!,
                tokens: deferredTokens.baseAddress!, batch: 1, time: deferredTokens.count, channels: 16)
            #expect(Array(model.gradients) == full, "\(task): adding the deferred rows back gives the same bits")
        }
    }

    /// Targets of -100 count for nothing: a batch whose second row is all ignored matches the first row alone.
    @Test func ignoredTargets() throws {
        let config = GPTConfig(vocabularySize: 30, contextLength: 8, layerCount: 2, headCount: 2, channels: 8)
        let model = GPT(config: config, batchSize: 2, sequenceLength: 8)
        model.initializeRandomly(seed: 2)
        var random = TestRandom(seed: 9)
        let tokens = (0..<16).map { _ in Int32(random.int(below: 30)) }
        var targets = (0..<16).map { _ in Int32(random.int(below: 30)) }
        targets[2] = -100
        let single = Array(targets[0..<8])
        for i in 8..<16 { targets[i] = -100 }

        model.zeroGradients()
        let rowLoss = model.forward(tokens: Array(tokens[0..<8]), targets: single, batch: 1)
        model.backward()
        let rowGradients = Array(model.gradients)
        model.zeroGradients()
        let batchLoss = model.forward(tokens: tokens, targets: targets, batch: 2)
        model.backward()
        #expect(abs(rowLoss - batchLoss) <= 1e-6 * rowLoss)
        #expect(maxRelativeError(Array(model.gradients), rowGradients.doubles, floor: 1e-3) < 1e-4)
        #expect(model.forward(tokens: tokens, targets: nil, batch: 2).isNaN)
        #expect(model.logits.count == 2 * 8 * 30)
    }
}
