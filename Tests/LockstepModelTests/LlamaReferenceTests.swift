import Foundation
import LockstepFormats
import LockstepKernels
import LockstepTestSupport
import Testing

@testable import LockstepModel
import LockstepOptimizer

/// The Llama family against PyTorch's numbers in ../shared/reference/llama-tiny (see its README): RMSNorm
/// with weights away from 1, rotary positions, 4 query heads over 2 key/value heads, SiLU-gated MLP, no biases,
/// an untied head. Logits, loss and gradients of the language model and the classifier are checked by
/// `ReferenceTests` with GPT-2's; here the config, 10 AdamW steps (losses 1e-5, gradient norms 1e-4, parameters
/// 2e-5 absolute where GPT-2 gets 1e-5: see the test), 10 Muon steps and the save/load round trip.
@Suite struct LlamaReferenceTests {
    static let lmDirectory = ReferenceTests.Reference.all[1].lm

    @Test(.requires(.shared(Self.lmDirectory))) func configReadsAsLlama() throws {
        try TestEnvironment.require(.shared(Self.lmDirectory))
        let config = try HuggingFaceModel.loadConfig(directory: Self.lmDirectory)
        #expect(config.family == .llama)
        #expect(config.keyValueHeads == 2 && config.headCount == 4 && config.mlpWidth == 128)
        #expect(config.tiesHead == false && config.ropeTheta == 10_000 && config.layerNormEpsilon == 1e-5)
        let layout = ParameterLayout(config: config)
        #expect(layout.tensor(named: "lm_head.weight")?.role == .head)
        #expect(layout.tensor(named: "model.layers.0.self_attn.k_proj.weight")?.shape == [24, 48])
        #expect(layout.tensor(named: "model.layers.1.mlp.down_proj.weight")?.role == .residualProjection)
        #expect(layout.tensor(named: "model.norm.weight")?.role == .norm)
    }

    @Test(.requires(.shared(Self.lmDirectory))) func tenAdamWSteps() throws {
        try TestEnvironment.require(.shared(Self.lmDirectory))
        let expected = try SafeTensorsFile.read(Self.lmDirectory.appendingPathComponent("expected.safetensors"))
        let (model, lossError, normError) = try ReferenceTests.tenAdamWSteps(Self.lmDirectory, expected)
        // Absolute parameter error, as for GPT-2 (AdamW moves a parameter about 1e-2 in 10 steps), but 2e-5 rather
        // than 1e-5: the reference's own float32 parameters are 8.8e-6 from the same 10 steps in float64 (in
        // mlp.down_proj, measured with torch.float64), and ours are 6.1e-6 from the reference when this suite
        // runs alone, 1.3e-5 when it runs beside the other suites of the test process (last-bit differences in
        // the matrix products, amplified by AdamW where gradients are tiny). Llama has no biases, so no tensor
        // has an exactly zero gradient to exclude.
        var absoluteError: Float = 0, worst = ""
        for tensor in model.layout.tensors {
            let reference = try expected.floats(named: "after_training." + tensor.name)
            let error = zip(model.parameters[tensor.range], reference).map { abs($0 - $1) }.max() ?? 0
            if error > absoluteError { (absoluteError, worst) = (error, tensor.name) }
        }
        print("Llama AdamW reference: losses \(lossError), grad norms \(normError), parameters \(absoluteError) absolute (worst \(worst))")
        #expect(lossError < 1e-5)
        #expect(normError < 1e-4)
        #expect(absoluteError < 2e-5, "worst in \(worst)")
    }

    /// Ten steps of `torch.optim.Muon`'s algorithm on the blocks' matrices (q, k, v, o, gate, up, down; Llama's
    /// `(out, in)` storage, tall k/v/gate/up and wide down) with AdamW on the rest, after clipping to 1.0, against
    /// PyTorch's `muon_losses` and `after_muon.<name>` (float32): losses 1e-5 relative, parameters 1e-5 absolute
    /// (measured: 8e-8 and 6e-7). Dividing by `‖X‖_F + 1e-7` instead of PyTorch's `max(‖X‖_F, 1e-7)` misses by
    /// 1.7e-5 in q_proj and k_proj, whose early gradients are small and nearly low-rank.
    @Test(.requires(.shared(Self.lmDirectory))) func tenMuonSteps() throws {
        try TestEnvironment.require(.shared(Self.lmDirectory))
        let expected = try SafeTensorsFile.read(Self.lmDirectory.appendingPathComponent("expected.safetensors"))
        let tokens = try expected.int32s(named: "input_ids"), targets = try expected.int32s(named: "targets")
        let model = try ReferenceTests.loadModel(Self.lmDirectory, batch: 2, time: 16)
        let optimizer = MuonOptimizer(
            layout: model.layout,
            settings: MuonSettings(learningRate: 0.02, scheduleLearningRate: 1e-3, momentum: 0.95, weightDecay: 0.1))
        #expect(optimizer.muonTensorNames.count == 14)
        let settings = AdamWSettings(beta1: 0.9, beta2: 0.95, epsilon: 1e-8, weightDecay: 0.1)
        var losses: [Float] = []
        for _ in 0..<10 {
            model.zeroGradients()
            losses.append(model.forward(tokens: tokens, targets: targets, batch: 2))
            model.backward()
            let norm = model.clipGradients(maxNorm: 1.0)
            try optimizer.step(
                parameters: model.parameters, gradientSum: model.gradients, norm: norm, meanFactor: 1, maxNorm: 0,
                scheduledLearningRate: 1e-3, settings: settings)
        }
        let lossError = maxRelativeError(losses, try expected.floats(named: "muon_losses").doubles, floor: 1e-3)
        var absoluteError: Float = 0, worst = ""
        for tensor in model.layout.tensors {
            let reference = try expected.floats(named: "after_muon." + tensor.name)
            let error = zip(model.parameters[tensor.range], reference).map { abs($0 - $1) }.max() ?? 0
            if error > absoluteError { (absoluteError, worst) = (error, tensor.name) }
        }
        print("Llama Muon reference: losses \(lossError), parameters \(absoluteError) absolute (worst \(worst))")
        #expect(lossError < 1e-5)
        #expect(absoluteError < 1e-5, "worst in \(worst)")
    }

    /// A Llama saved by `HuggingFaceModel.save` reads back as the same config and parameters; loading a
    /// language model's file into a classifier of the same body drops `lm_head` and keeps the rest.
    @Test(.requires(.shared(Self.lmDirectory))) func saveAndLoadRoundTrip() throws {
        try TestEnvironment.require(.shared(Self.lmDirectory))
        let model = try ReferenceTests.loadModel(Self.lmDirectory, batch: 1, time: 8)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("lockstep-llama-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        try HuggingFaceModel.save(model: model, directory: directory)
        let config = try HuggingFaceModel.loadConfig(directory: directory)
        #expect(config == model.config)
        let copy = GPT(config: config, batchSize: 1, sequenceLength: 8)
        try HuggingFaceModel.load(directory: directory, into: copy)
        #expect(Array(copy.parameters) == Array(model.parameters))

        var classifierConfig = config
        classifierConfig.labelCount = 2
        let classifier = GPT(config: classifierConfig, batchSize: 1, sequenceLength: 8)
        try HuggingFaceModel.load(directory: directory, into: classifier, requireScore: false)
        let embed = try #require(classifier.layout.tensor(named: "model.embed_tokens.weight"))
        #expect(classifier.layout.tensor(named: "lm_head.weight") == nil)
        #expect(Array(classifier.parameters[embed.range]) == Array(model.parameters[embed.range]))
    }
}
