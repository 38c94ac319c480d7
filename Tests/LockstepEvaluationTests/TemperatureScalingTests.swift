import Foundation
import LockstepTestSupport
import Testing

@testable import LockstepEvaluation

@Suite struct TemperatureScalingTests {
    /// A synthetic dev set whose labels are drawn from softmax(trueLogits), with the logits a model would
    /// report: trueLogits × `scale`. scale 3 is an over-confident model whose ideal temperature is 3.
    struct Synthetic {
        var logits: [Double]  // N×C, row-major
        var labels: [Int]
        let classCount: Int
    }

    static func synthetic(count: Int, classCount: Int, scale: Double, seed: UInt64) -> Synthetic {
        var random = TestRandom(seed: seed)
        var logits: [Double] = []
        var labels: [Int] = []
        logits.reserveCapacity(count * classCount)
        for _ in 0..<count {
            let trueLogits = (0..<classCount).map { _ in random.uniform(-2, 2) }
            let top = trueLogits.max()!
            let weights = trueLogits.map { exp($0 - top) }
            // Inverse-CDF draw from softmax(trueLogits).
            var u = random.uniform(0, 1) * weights.reduce(0, +)
            var label = classCount - 1
            for (k, w) in weights.enumerated() {
                if u < w {
                    label = k
                    break
                }
                u -= w
            }
            labels.append(label)
            logits.append(contentsOf: trueLogits.map { $0 * scale })
        }
        return Synthetic(logits: logits, labels: labels, classCount: classCount)
    }

    func nll(_ data: Synthetic, _ temperature: Double) throws -> Double {
        try TemperatureScaling.meanNegativeLogLikelihood(
            logits: data.logits, labels: data.labels, classCount: data.classCount, temperature: temperature)
    }

    @Test func recoversOverConfidence() throws {
        // 4000 examples, 4 classes, logits 3× too large: the fitted T should be near 3.
        let data = Self.synthetic(count: 4000, classCount: 4, scale: 3, seed: 7)
        let t = try TemperatureScaling.fit(logits: data.logits, labels: data.labels, classCount: data.classCount)
        #expect(abs(t - 3) < 0.3, "fitted T = \(t)")
        let before = try nll(data, 1)
        let after = try nll(data, t)
        #expect(after <= before, "NLL \(before) -> \(after)")
        // A minimum: a 1% step either way does not lower the loss.
        #expect(try nll(data, t * 1.01) >= after)
        #expect(try nll(data, t * 0.99) >= after)
        // Nor does any point of a coarse grid over the searched range.
        for logT in stride(from: -5.0, through: 5.0, by: 0.05) {
            #expect(try nll(data, exp(logT)) >= after, "log T = \(logT)")
        }
    }

    @Test func recoversUnderConfidence() throws {
        // Logits half as large as they should be: T near 1/2.
        let data = Self.synthetic(count: 4000, classCount: 3, scale: 0.5, seed: 11)
        let t = try TemperatureScaling.fit(logits: data.logits, labels: data.labels, classCount: data.classCount)
        #expect(abs(t - 0.5) < 0.05, "fitted T = \(t)")
        #expect(try nll(data, t * 1.01) >= nll(data, t))
        #expect(try nll(data, t * 0.99) >= nll(data, t))
    }

    @Test func scalingKeepsAccuracyAndImprovesCalibration() throws {
        let data = Self.synthetic(count: 3000, classCount: 4, scale: 3, seed: 3)
        let names = ["a", "b", "c", "d"]
        let t = try TemperatureScaling.fit(logits: data.logits, labels: data.labels, classCount: data.classCount)
        let raw = try ClassificationReport.compute(logits: data.logits, labels: data.labels, labelNames: names)
        let scaled = try ClassificationReport.compute(
            logits: data.logits, labels: data.labels, labelNames: names, temperature: t)
        #expect(scaled.accuracy == raw.accuracy)
        #expect(scaled.confusionMatrix == raw.confusionMatrix)
        #expect(scaled.macroF1 == raw.macroF1)
        #expect(scaled.negativeLogLikelihood <= raw.negativeLogLikelihood)
        #expect(
            scaled.expectedCalibrationError < raw.expectedCalibrationError,
            "ECE \(raw.expectedCalibrationError) -> \(scaled.expectedCalibrationError)")
        // The same through apply(): probabilities in, same report.
        let probabilities = try TemperatureScaling.apply(
            logits: data.logits, classCount: data.classCount, temperature: t)
        let viaApply = try ClassificationReport.compute(
            probabilities: probabilities, labels: data.labels, labelNames: names)
        #expect(viaApply.confusionMatrix == raw.confusionMatrix)
        #expect(abs(viaApply.negativeLogLikelihood - scaled.negativeLogLikelihood) < 1e-12)
    }

    @Test func deterministicAndShapeIndependent() throws {
        let data = Self.synthetic(count: 500, classCount: 3, scale: 2, seed: 5)
        let flat = try TemperatureScaling.fit(logits: data.logits, labels: data.labels, classCount: 3)
        let again = try TemperatureScaling.fit(logits: data.logits, labels: data.labels, classCount: 3)
        let rows = stride(from: 0, to: data.logits.count, by: 3).map { Array(data.logits[$0..<($0 + 3)]) }
        let nested = try TemperatureScaling.fit(logits: rows, labels: data.labels)
        #expect(flat == again)
        #expect(flat == nested)
        #expect(
            try TemperatureScaling.meanNegativeLogLikelihood(logits: rows, labels: data.labels, temperature: flat)
                == nll(data, flat))
    }

    @Test func edgeCasesClampOrReturnOne() throws {
        // Constant rows: the loss ignores T, fit returns 1.
        #expect(try TemperatureScaling.fit(logits: [[1, 1], [-2, -2]], labels: [0, 1]) == 1)
        // Separable and always right: sharper is always better, T stops at the lower end e^−5.
        let sharp = try TemperatureScaling.fit(logits: [[2, -1], [-1, 3], [0.5, 0]], labels: [0, 1, 0])
        #expect(abs(sharp - exp(-5)) < 1e-15)
        // Always wrong: flatter is always better, T stops at the upper end e^5.
        let flat = try TemperatureScaling.fit(logits: [[2, -1], [-1, 3], [0.5, 0]], labels: [1, 0, 1])
        #expect(abs(flat - exp(5)) < 1e-12)
        // One class: nothing to calibrate.
        #expect(try TemperatureScaling.fit(logits: [[0.3], [2]], labels: [0, 0]) == 1)
    }

    @Test func softmaxIsStableAndExact() throws {
        // Huge logits: max-subtracted, no overflow.
        let huge = try TemperatureScaling.apply(logits: [[1000, 0, -1000], [800, 800, 799]], temperature: 1)
        #expect(huge[0] == [1, 0, 0])
        let e = exp(-1.0)
        #expect(abs(huge[1][0] - 1 / (2 + e)) < 1e-15)
        #expect(abs(huge[1][2] - e / (2 + e)) < 1e-15)
        // Small logits against the textbook formula, T = 2.
        let z = [0.5, -1.25, 2.0]
        let p = try TemperatureScaling.apply(logits: [z], temperature: 2)[0]
        let w = z.map { exp($0 / 2) }
        let sum = w.reduce(0, +)
        for k in 0..<3 { #expect(abs(p[k] - w[k] / sum) < 1e-15) }
        // Flat form agrees with the nested form.
        let flat = try TemperatureScaling.apply(logits: z + z.reversed(), classCount: 3, temperature: 2)
        #expect(Array(flat[0..<3]) == p)
        #expect(Array(flat[3..<6]) == p.reversed())
    }

    @Test func badInputIsRejected() {
        func argument(_ body: () throws -> Any) -> String? {
            do {
                _ = try body()
                return nil
            } catch let error as ClassificationMetricsError {
                return error.argument
            } catch {
                return "unexpected \(error)"
            }
        }
        #expect(argument { try TemperatureScaling.fit(logits: [Double](), labels: [], classCount: 2) } == "labels")
        #expect(argument { try TemperatureScaling.fit(logits: [[Double]](), labels: []) } == "labels")
        #expect(argument { try TemperatureScaling.fit(logits: [[1, 0]], labels: [0, 1]) } == "logits")
        #expect(argument { try TemperatureScaling.fit(logits: [[1, 0], [1]], labels: [0, 1]) } == "logits")
        #expect(argument { try TemperatureScaling.fit(logits: [[1, 0]], labels: [2]) } == "labels")
        #expect(argument { try TemperatureScaling.fit(logits: [[.nan, 0]], labels: [0]) } == "logits")
        #expect(argument { try TemperatureScaling.fit(logits: [1, 0], labels: [0], classCount: 0) } == "classCount")
        #expect(argument { try TemperatureScaling.apply(logits: [[1, 0]], temperature: -1) } == "temperature")
        #expect(argument { try TemperatureScaling.apply(logits: [[1, 0]], temperature: .infinity) } == "temperature")
        #expect(
            argument { try TemperatureScaling.apply(logits: [1, 0, 2], classCount: 2, temperature: 1) } == "logits")
    }
}
