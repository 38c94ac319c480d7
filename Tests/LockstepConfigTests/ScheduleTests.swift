import Foundation
import Testing

@testable import LockstepConfig

@Suite struct ScheduleTests {
    /// Hand-computed values agree to this relative tolerance (they differ only by rounding).
    static let tolerance = 1e-12

    func expectClose(
        _ actual: Double, _ expected: Double, _ label: String, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        let scale = max(abs(expected), 1e-300)
        #expect(
            abs(actual - expected) / scale <= Self.tolerance, "\(label): \(actual) vs \(expected)",
            sourceLocation: sourceLocation)
    }

    func values(_ s: LearningRateSchedule, _ steps: ClosedRange<Int>) -> [Double] {
        steps.map { s.learningRate(atStep: $0) }
    }

    @Test func constantWithWarmup() throws {
        let s = LearningRateSchedule(kind: .constant, peak: 1e-3, minimum: 1e-4, warmupSteps: 4, totalSteps: 10)
        try s.validate()
        expectClose(s.learningRate(atStep: 0), 2.5e-4, "step 0")
        expectClose(s.learningRate(atStep: 1), 5e-4, "step 1")
        expectClose(s.learningRate(atStep: 3), 1e-3, "last warmup step")
        for step in 4...20 { expectClose(s.learningRate(atStep: step), 1e-3, "step \(step)") }
    }

    @Test func constantWithoutWarmup() {
        let s = LearningRateSchedule(kind: .constant, peak: 0.5, totalSteps: 3)
        #expect(values(s, 0...5) == Array(repeating: 0.5, count: 6))
    }

    @Test func cosine() throws {
        // peak 1, min 0.1, warmup 2, total 12: decay over steps 2...11 (span 9).
        let s = LearningRateSchedule(kind: .cosine, peak: 1, minimum: 0.1, warmupSteps: 2, totalSteps: 12)
        try s.validate()
        expectClose(s.learningRate(atStep: 0), 0.5, "warmup 0")
        expectClose(s.learningRate(atStep: 1), 1.0, "warmup 1")
        expectClose(s.learningRate(atStep: 2), 1.0, "decay start")
        // step 5: p = 3/9, lr = 0.1 + 0.9 * (1 + cos(pi/3)) / 2 = 0.1 + 0.9 * 0.75 = 0.775
        expectClose(s.learningRate(atStep: 5), 0.775, "p = 1/3")
        // step 8: p = 6/9, cos(2pi/3) = -0.5: 0.1 + 0.9 * 0.25 = 0.325
        expectClose(s.learningRate(atStep: 8), 0.325, "p = 2/3")
        expectClose(s.learningRate(atStep: 11), 0.1, "last step")
        expectClose(s.learningRate(atStep: 12), 0.1, "past the end")
        expectClose(s.learningRate(atStep: 1000), 0.1, "far past the end")
        // Midpoint with an even span: warmup 0, total 11, step 5 has p = 1/2 -> (peak + min) / 2.
        let m = LearningRateSchedule(kind: .cosine, peak: 6e-4, minimum: 6e-5, totalSteps: 11)
        expectClose(m.learningRate(atStep: 0), 6e-4, "no warmup: step 0 is peak")
        expectClose(m.learningRate(atStep: 5), 3.3e-4, "midpoint")
    }

    @Test func linear() throws {
        // peak 2, min 0, warmup 1, total 6: decay over steps 1...5 (span 4).
        let s = LearningRateSchedule(kind: .linear, peak: 2, minimum: 0, warmupSteps: 1, totalSteps: 6)
        try s.validate()
        let expected = [2.0, 2.0, 1.5, 1.0, 0.5, 0.0, 0.0]
        for (step, value) in expected.enumerated() {
            expectClose(s.learningRate(atStep: step), value, "step \(step)")
        }
    }

    @Test func warmupStableDecay() throws {
        // peak 1, min 0.2, warmup 2, total 10, decay 4: stable through step 5, steps 6...9 fall by 0.2 each.
        let s = LearningRateSchedule(
            kind: .warmupStableDecay, peak: 1, minimum: 0.2, warmupSteps: 2, totalSteps: 10, decaySteps: 4)
        try s.validate()
        let expected = [0.5, 1, 1, 1, 1, 1, 0.8, 0.6, 0.4, 0.2, 0.2]
        for (step, value) in expected.enumerated() {
            expectClose(s.learningRate(atStep: step), value, "step \(step)")
        }
        // Warmup running straight into the decay.
        let tight = LearningRateSchedule(
            kind: .warmupStableDecay, peak: 1, minimum: 0, warmupSteps: 2, totalSteps: 4, decaySteps: 2)
        try tight.validate()
        #expect(values(tight, 0...3) == [0.5, 1, 0.5, 0])
    }

    @Test func inverseSquareRoot() throws {
        // peak 1, warmup 4: step 3 -> 1, step 15 -> sqrt(4/16) = 0.5, step 63 -> 0.25, floor 0.3 applies there.
        let s = LearningRateSchedule(
            kind: .inverseSquareRoot, peak: 1, minimum: 0.3, warmupSteps: 4, totalSteps: 100)
        try s.validate()
        expectClose(s.learningRate(atStep: 0), 0.25, "warmup 0")
        expectClose(s.learningRate(atStep: 3), 1, "last warmup step")
        expectClose(s.learningRate(atStep: 4), (4.0 / 5.0).squareRoot(), "first step after warmup")
        expectClose(s.learningRate(atStep: 15), 0.5, "step 15")
        expectClose(s.learningRate(atStep: 63), 0.3, "floored at the minimum")
        // Without warmup, step 0 is peak and step 3 is peak / 2.
        let n = LearningRateSchedule(kind: .inverseSquareRoot, peak: 1, totalSteps: 10)
        expectClose(n.learningRate(atStep: 0), 1, "no warmup step 0")
        expectClose(n.learningRate(atStep: 3), 0.5, "no warmup step 3")
    }

    /// Every kind: warmup rises strictly, after warmup nothing rises, and after warmup nothing leaves
    /// [minimum, peak]; decaying kinds reach the minimum exactly at the last step.
    @Test(arguments: LearningRateSchedule.Kind.allCases)
    func shapeInvariants(kind: LearningRateSchedule.Kind) throws {
        let s = LearningRateSchedule(
            kind: kind, peak: 3e-4, minimum: 3e-5, warmupSteps: 50, totalSteps: 1000,
            decaySteps: kind == .warmupStableDecay ? 200 : nil)
        try s.validate()
        let lr = values(s, 0...1100)
        for step in 1..<50 { #expect(lr[step] > lr[step - 1], "warmup rises at \(step)") }
        for step in 50...1100 {
            #expect(lr[step] <= lr[step - 1], "\(kind) does not rise at \(step)")
            #expect(lr[step] >= s.minimum && lr[step] <= s.peak, "\(kind) in range at \(step): \(lr[step])")
        }
        #expect(lr[49] == s.peak)
        if kind != .constant && kind != .inverseSquareRoot {
            #expect(lr[999] == s.minimum, "\(kind) ends at the minimum")
            #expect(lr[998] > s.minimum, "\(kind) reaches the minimum only at the last step")
        }
    }

    @Test func codableRoundTripUsesConfigKeys() throws {
        let s = LearningRateSchedule(
            kind: .warmupStableDecay, peak: 6e-4, minimum: 6e-5, warmupSteps: 10, totalSteps: 500,
            decaySteps: 100)
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let json = try encoder.encode(s)
        let text = String(decoding: json, as: UTF8.self)
        #expect(text.contains("\"kind\":\"warmup_stable_decay\""))
        #expect(text.contains("\"learning_rate\":"))
        #expect(text.contains("\"min_learning_rate\":"))
        #expect(text.contains("\"warmup_steps\":10"))
        #expect(text.contains("\"decay_steps\":100"))
        #expect(text.contains("\"total_steps\":500"))
        #expect(try JSONDecoder().decode(LearningRateSchedule.self, from: json) == s)
        for kind in LearningRateSchedule.Kind.allCases {
            let k = LearningRateSchedule(kind: kind, peak: 0.1, totalSteps: 7)
            #expect(try JSONDecoder().decode(LearningRateSchedule.self, from: try encoder.encode(k)) == k)
        }
    }

    @Test func decodesAConfigSectionWithDefaults() throws {
        let section = #"{"kind": "cosine", "learning_rate": 0.001}"#
        var s = try JSONDecoder().decode(LearningRateSchedule.self, from: Data(section.utf8))
        #expect(s == LearningRateSchedule(kind: .cosine, peak: 0.001, minimum: 0, warmupSteps: 0, totalSteps: 0))
        #expect(throws: LearningRateSchedule.ValidationError.self) { try s.validate() }
        s.totalSteps = 100  // from training.max_steps
        try s.validate()
        #expect(
            LearningRateSchedule.configurationKeys.sorted()
                == ["decay_steps", "kind", "learning_rate", "min_learning_rate", "warmup_steps"])
        #expect(throws: DecodingError.self) {
            try JSONDecoder().decode(
                LearningRateSchedule.self, from: Data(#"{"kind": "exponential", "learning_rate": 1}"#.utf8))
        }
    }

    @Test func validationNamesTheKey() {
        func key(_ s: LearningRateSchedule) -> String? {
            do {
                try s.validate()
                return nil
            } catch let error as LearningRateSchedule.ValidationError {
                #expect(error.description.hasPrefix(error.key + ": "))
                return error.key
            } catch { return "unexpected \(error)" }
        }
        #expect(key(.init(kind: .cosine, peak: 1, warmupSteps: 11, totalSteps: 10)) == "schedule.warmup_steps")
        #expect(key(.init(kind: .cosine, peak: 1, warmupSteps: -1, totalSteps: 10)) == "schedule.warmup_steps")
        #expect(key(.init(kind: .cosine, peak: 0, totalSteps: 10)) == "schedule.learning_rate")
        #expect(key(.init(kind: .cosine, peak: .nan, totalSteps: 10)) == "schedule.learning_rate")
        #expect(key(.init(kind: .cosine, peak: 1, minimum: 2, totalSteps: 10)) == "schedule.min_learning_rate")
        #expect(key(.init(kind: .cosine, peak: 1, minimum: -1, totalSteps: 10)) == "schedule.min_learning_rate")
        #expect(key(.init(kind: .linear, peak: 1, totalSteps: 0)) == "training.max_steps")
        #expect(key(.init(kind: .warmupStableDecay, peak: 1, totalSteps: 10)) == "schedule.decay_steps")
        #expect(
            key(.init(kind: .warmupStableDecay, peak: 1, warmupSteps: 5, totalSteps: 10, decaySteps: 6))
                == "schedule.decay_steps")
        #expect(
            key(.init(kind: .warmupStableDecay, peak: 1, warmupSteps: 5, totalSteps: 10, decaySteps: 0))
                == "schedule.decay_steps")
        #expect(key(.init(kind: .cosine, peak: 1, totalSteps: 10, decaySteps: 3)) == "schedule.decay_steps")
        #expect(key(.init(kind: .warmupStableDecay, peak: 1, warmupSteps: 5, totalSteps: 10, decaySteps: 5)) == nil)
        let error = LearningRateSchedule.ValidationError(key: "schedule.warmup_steps", message: "expected 0 to 10")
        #expect(error.description == "schedule.warmup_steps: expected 0 to 10")
    }

    @Test func edgeCasesStayFinite() throws {
        // Warmup filling the whole run, then past the end: the decaying kinds sit at the minimum.
        let all = LearningRateSchedule(kind: .cosine, peak: 1, warmupSteps: 4, totalSteps: 4)
        try all.validate()
        #expect(values(all, 0...4) == [0.25, 0.5, 0.75, 1, 0])
        // A one-step run: its only (and last) step uses the minimum.
        let one = LearningRateSchedule(kind: .linear, peak: 1, minimum: 0.1, totalSteps: 1)
        try one.validate()
        #expect(one.learningRate(atStep: 0) == 0.1)
    }
}
