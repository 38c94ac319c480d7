import Foundation
import LockstepFormats
import LockstepTestSupport
import Testing

@testable import LockstepModel

@Suite struct ParameterLayoutTests {
    static let tiny = GPTConfig(vocabularySize: 64, contextLength: 32, layerCount: 2, headCount: 4, channels: 48)

    @Test func orderShapesAndCount() {
        let layout = ParameterLayout(config: Self.tiny)
        let names = layout.tensors.map(\.name)
        #expect(names.first == "transformer.wte.weight")
        #expect(names[1] == "transformer.wpe.weight")
        #expect(names[2] == "transformer.h.0.ln_1.weight")
        #expect(names.suffix(2) == ["transformer.ln_f.weight", "transformer.ln_f.bias"])
        #expect(names.count == 2 + 12 * 2 + 2)
        #expect(layout.tensor(named: "transformer.h.1.attn.c_attn.weight")?.shape == [48, 144])
        #expect(layout.tensor(named: "transformer.h.1.mlp.c_fc.weight")?.shape == [48, 192])
        #expect(layout.tensor(named: "transformer.h.1.mlp.c_proj.weight")?.shape == [192, 48])
        #expect(layout.tensor(named: "score.weight") == nil)
        // Tensors tile the buffer without gaps.
        var position = 0
        for tensor in layout.tensors {
            #expect(tensor.offset == position)
            position += tensor.count
        }
        #expect(position == layout.count)
        // 12·C² + 13·C per block, plus embeddings and ln_f: the tiny model has 61,248 parameters (244,992 bytes).
        #expect(layout.count == 244_992 / 4)
        #expect(layout.range(of: "transformer.wpe.weight") == (64 * 48)..<(96 * 48))
    }

    @Test func blocksAreContiguous() {
        let layout = ParameterLayout(config: Self.tiny)
        let first = layout.blockRange(0), second = layout.blockRange(1)
        #expect(first.lowerBound == layout.range(of: "transformer.h.0.ln_1.weight")!.lowerBound)
        #expect(first.upperBound == second.lowerBound)
        #expect(second.upperBound == layout.range(of: "transformer.ln_f.weight")!.lowerBound)
        #expect(first.count == 12 * 48 * 48 + 13 * 48)
        #expect(layout.blocks[1].qkvWeight == layout.range(of: "transformer.h.1.attn.c_attn.weight")!.lowerBound)
    }

    @Test func decayOnMatricesOnly() {
        var config = Self.tiny
        config.labelCount = 3
        let layout = ParameterLayout(config: config)
        let decayed = Set(layout.tensors.filter(layout.decays).map(\.name))
        #expect(decayed.contains("transformer.wte.weight"))
        #expect(decayed.contains("transformer.h.0.attn.c_proj.weight"))
        #expect(decayed.contains("score.weight"))
        #expect(!decayed.contains("transformer.h.0.attn.c_proj.bias"))
        #expect(!decayed.contains("transformer.h.0.ln_1.weight"))
        #expect(!decayed.contains("transformer.ln_f.weight"))
        #expect(decayed.count == 2 + 4 * 2 + 1)
        #expect(layout.tensors.last?.name == "score.weight")
        #expect(layout.tensors.last?.shape == [3, 48])
    }

    @Test(.requires(.shared(SharedFiles.reference.appendingPathComponent("lm/model.safetensors")))) func matchesHuggingFaceNames() throws {
        let url = SharedFiles.reference.appendingPathComponent("lm/model.safetensors")
        try TestEnvironment.require(.shared(url))
        let file = try SafeTensorsFile.read(url)
        let layout = ParameterLayout(config: Self.tiny)
        #expect(Set(file.names) == Set(layout.tensors.map(\.name)))
        for tensor in layout.tensors { #expect(try file.tensor(named: tensor.name).shape == tensor.shape) }
    }

    @Test func configProblems() {
        #expect(Self.tiny.problems.isEmpty)
        var bad = Self.tiny
        bad.headCount = 5
        #expect(bad.problems.count == 1)
        bad.padTokenID = 64
        #expect(bad.problems.count == 2)
    }

    @Test func randomInitializationIsGPT2s() {
        let model = GPT(config: Self.tiny, batchSize: 1, sequenceLength: 4)
        model.initializeRandomly(seed: 7)
        func values(_ name: String) -> [Float] { Array(model.parameters[model.layout.range(of: name)!]) }
        func std(_ x: [Float]) -> Double {
            let mean = x.reduce(0.0) { $0 + Double($1) } / Double(x.count)
            return (x.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / Double(x.count)).squareRoot()
        }
        #expect(values("transformer.h.0.ln_1.weight").allSatisfy { $0 == 1 })
        #expect(values("transformer.h.0.attn.c_attn.bias").allSatisfy { $0 == 0 })
        #expect(abs(std(values("transformer.h.0.attn.c_attn.weight")) - 0.02) < 0.001)
        #expect(abs(std(values("transformer.wte.weight")) - 0.02) < 0.002)
        #expect(abs(std(values("transformer.h.1.mlp.c_proj.weight")) - 0.01) < 0.0005)  // 0.02 / √(2·2)
        let again = GPT(config: Self.tiny, batchSize: 1, sequenceLength: 4)
        again.initializeRandomly(seed: 7)
        #expect(Array(again.parameters) == Array(model.parameters))
        again.initializeRandomly(seed: 8)
        #expect(Array(again.parameters) != Array(model.parameters))
    }
}
