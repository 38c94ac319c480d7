import LockstepModel
import LockstepTestSupport
import Testing

@Suite("Incremental decoding")
struct IncrementalDecoderTests {
    static let configs = [
        GPTConfig(vocabularySize: 37, contextLength: 12, layerCount: 2, headCount: 3, channels: 24),
        // Llama: rotary positions (applied to each new query and key at its position), grouped-query attention
        // over a cache of 2 key/value heads, an untied head.
        GPTConfig(
            family: .llama, vocabularySize: 37, contextLength: 12, layerCount: 2, headCount: 4, channels: 24,
            keyValueHeadCount: 2, intermediateSize: 40),
    ]

    /// The KV-cache path must give the logits of a full forward pass at every position.
    @Test(arguments: Self.configs) func matchesFullForwardAtEveryPosition(config: GPTConfig) throws {
        let model = GPT(config: config, batchSize: 1, sequenceLength: 12)
        model.initializeRandomly(seed: 11)
        // Norm weights away from 1, so that a decoder reading the wrong norm would fail.
        var perturb = TestRandom(seed: 9)
        for i in model.parameters.indices { model.parameters[i] += Float(perturb.uniform(-0.05, 0.05)) }
        var random = TestRandom(seed: 3)
        let tokens = (0..<12).map { _ in Int32(random.next() % 37) }
        _ = tokens.withUnsafeBufferPointer { model.forward(tokens: $0.baseAddress!, targets: nil, batch: 1) }
        let full = Array(model.logits)

        let decoder = IncrementalDecoder(model: model)
        var worst: Double = 0
        for (position, token) in tokens.enumerated() {
            decoder.append(token)
            let expected = full[(position * 37)..<((position + 1) * 37)].map(Double.init)
            worst = max(worst, maxRelativeError(Array(decoder.logits), Array(expected), floor: 1))
        }
        #expect(worst < 1e-5, "max relative error \(worst)")
        #expect(decoder.isFull)
    }

    @Test func samplerIsSeededAndRespectsTopK() {
        let logits: [Float] = [0.1, 3, 2.9, -1, 0.5]
        logits.withUnsafeBufferPointer { buffer in
            var greedy = Sampler(settings: SamplingSettings(temperature: 0))
            #expect(greedy.sample(buffer) == 1)
            var a = Sampler(settings: SamplingSettings(temperature: 1, seed: 42))
            var b = Sampler(settings: SamplingSettings(temperature: 1, seed: 42))
            let drawsA = (0..<50).map { _ in a.sample(buffer) }
            let drawsB = (0..<50).map { _ in b.sample(buffer) }
            #expect(drawsA == drawsB)
            var topTwo = Sampler(settings: SamplingSettings(temperature: 1, topK: 2, seed: 1))
            let drawn = Set((0..<200).map { _ in topTwo.sample(buffer) })
            #expect(drawn == [1, 2])
            var nucleus = Sampler(settings: SamplingSettings(temperature: 1, topP: 0.3, seed: 1))
            #expect(Set((0..<100).map { _ in nucleus.sample(buffer) }) == [1])
        }
    }
}
