import Foundation
import Testing

@testable import LockstepEvaluation

@Suite struct ClassificationMetricsTests {
    /// Hand-computed values agree to this tolerance (relative above 1, absolute below): they differ only by
    /// Double rounding.
    static let tolerance = 1e-12

    func expectClose(
        _ actual: Double, _ expected: Double, _ label: String, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        #expect(
            abs(actual - expected) <= Self.tolerance * max(1, abs(expected)), "\(label): \(actual) vs \(expected)",
            sourceLocation: sourceLocation)
    }

    func expectClose(
        _ actual: [Double], _ expected: [Double], _ label: String, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        #expect(actual.count == expected.count, "\(label): count", sourceLocation: sourceLocation)
        for (k, (a, e)) in zip(actual, expected).enumerated() {
            expectClose(a, e, "\(label)[\(k)]", sourceLocation: sourceLocation)
        }
    }

    // MARK: - A hand-computed 3-class example

    // i | label | probabilities      | predicted | confidence | correct | bin = Int(15·c)
    // 0 |   0   | 0.70  0.20  0.10   |     0     |   0.70     |   yes   | 10 (10.5)
    // 1 |   0   | 0.20  0.50  0.30   |     1     |   0.50     |   no    |  7 (7.5)
    // 2 |   1   | 0.10  0.72  0.18   |     1     |   0.72     |   yes   | 10 (10.8)
    // 3 |   1   | 0.30  0.25  0.45   |     2     |   0.45     |   no    |  6 (6.75)
    // 4 |   2   | 0.22  0.20  0.58   |     2     |   0.58     |   yes   |  8 (8.7)
    // 5 |   2   | 0.15  0.55  0.30   |     1     |   0.55     |   no    |  8 (8.25)
    // 6 |   0   | 0.95  0.03  0.02   |     0     |   0.95     |   yes   | 14 (14.25)
    // (No confidence lies on a bin edge k/15; the edge rule has its own tests below.)
    static let threeClassProbabilities: [[Double]] = [
        [0.70, 0.20, 0.10], [0.20, 0.50, 0.30], [0.10, 0.72, 0.18], [0.30, 0.25, 0.45],
        [0.22, 0.20, 0.58], [0.15, 0.55, 0.30], [0.95, 0.03, 0.02],
    ]
    static let threeClassLabels = [0, 0, 1, 1, 2, 2, 0]
    static let threeClassNames = ["negative", "neutral", "positive"]

    @Test func threeClassByHand() throws {
        let r = try ClassificationReport.compute(
            probabilities: Self.threeClassProbabilities, labels: Self.threeClassLabels, labelNames: Self.threeClassNames
        )
        #expect(r.count == 7)
        #expect(r.labelNames == Self.threeClassNames)
        // Confusion (rows true, columns predicted):
        //   true 0: examples 0, 6 -> 0; example 1 -> 1      [2, 1, 0]
        //   true 1: example 2 -> 1; example 3 -> 2          [0, 1, 1]
        //   true 2: example 4 -> 2; example 5 -> 1          [0, 1, 1]
        #expect(r.confusionMatrix == [[2, 1, 0], [0, 1, 1], [0, 1, 1]])
        #expect(r.support == [3, 2, 2])
        #expect(r.predictedCount == [2, 3, 2])
        // Correct: examples 0, 2, 4, 6.
        expectClose(r.accuracy, 4.0 / 7.0, "accuracy")
        // TP = [2, 1, 1]; FP = predicted − TP = [0, 2, 1]; FN = support − TP = [1, 1, 1].
        // precision = TP/(TP+FP) = [2/2, 1/3, 1/2]; recall = TP/(TP+FN) = [2/3, 1/2, 1/2].
        expectClose(r.precision, [1, 1.0 / 3.0, 0.5], "precision")
        expectClose(r.recall, [2.0 / 3.0, 0.5, 0.5], "recall")
        // F1 = 2PR/(P+R): class 0: 2·1·(2/3)/(5/3) = 4/5; class 1: 2·(1/3)(1/2)/(5/6) = 2/5;
        // class 2: 2·(1/2)(1/2)/1 = 1/2. Macro-F1 = (0.8 + 0.4 + 0.5)/3 = 1.7/3.
        expectClose(r.f1, [0.8, 0.4, 0.5], "f1")
        expectClose(r.macroF1, 1.7 / 3.0, "macro F1")
        // NLL: mean of −log p(true class)
        // = −(log .70 + log .20 + log .72 + log .25 + log .58 + log .30 + log .95)/7
        // = 5.4809046.../7 = 0.7829864...
        // (−log of each: 0.35667, 1.60944, 0.32850, 1.38629, 0.54473, 1.20397, 0.05129).
        let nll = -(log(0.70) + log(0.20) + log(0.72) + log(0.25) + log(0.58) + log(0.30) + log(0.95)) / 7
        expectClose(r.negativeLogLikelihood, nll, "NLL")
        #expect(abs(nll - 0.7829863655) < 1e-9)
        // Mean confidence = (.70 + .50 + .72 + .45 + .58 + .55 + .95)/7 = 4.45/7.
        expectClose(r.meanConfidence, 4.45 / 7, "mean confidence")
        // ECE, 15 bins, by bin: (n_b/N)·|acc_b − conf_b|
        //   bin 6:  n=1, acc 0,   conf 0.45  -> (1/7)·0.45
        //   bin 7:  n=1, acc 0,   conf 0.50  -> (1/7)·0.50
        //   bin 8:  n=2, acc 1/2, conf 0.565 -> (2/7)·0.065 = 0.13/7
        //   bin 10: n=2, acc 1,   conf 0.71  -> (2/7)·0.29  = 0.58/7
        //   bin 14: n=1, acc 1,   conf 0.95  -> (1/7)·0.05
        // ECE = (0.45 + 0.50 + 0.13 + 0.58 + 0.05)/7 = 1.71/7 = 0.2442857142857...
        expectClose(r.expectedCalibrationError, 1.71 / 7, "ECE")
        var counts = Array(repeating: 0, count: 15)
        counts[6] = 1
        counts[7] = 1
        counts[8] = 2
        counts[10] = 2
        counts[14] = 1
        #expect(r.binCounts == counts)
        var accuracy = Array(repeating: 0.0, count: 15)
        accuracy[8] = 0.5
        accuracy[10] = 1
        accuracy[14] = 1
        expectClose(r.binAccuracy, accuracy, "bin accuracy")
        var confidence = Array(repeating: 0.0, count: 15)
        confidence[6] = 0.45
        confidence[7] = 0.5
        confidence[8] = 0.565
        confidence[10] = 0.71
        confidence[14] = 0.95
        expectClose(r.binConfidence, confidence, "bin confidence")
    }

    @Test func flatAndNestedAgree() throws {
        let nested = try ClassificationReport.compute(
            probabilities: Self.threeClassProbabilities, labels: Self.threeClassLabels, labelNames: Self.threeClassNames
        )
        let flat = try ClassificationReport.compute(
            probabilities: Self.threeClassProbabilities.flatMap { $0 }, labels: Self.threeClassLabels,
            labelNames: Self.threeClassNames)
        #expect(nested == flat)
    }

    // MARK: - Binary

    // i | label | probabilities | predicted | confidence | correct | bin
    // 0 |   1   | 0.10  0.90    |     1     |   0.90     |   yes   | 13 (13.5)
    // 1 |   1   | 0.65  0.35    |     0     |   0.65     |   no    |  9 (9.75)
    // 2 |   0   | 0.83  0.17    |     0     |   0.83     |   yes   | 12 (12.45)
    // 3 |   0   | 0.30  0.70    |     1     |   0.70     |   no    | 10 (10.5)
    // 4 |   1   | 0.25  0.75    |     1     |   0.75     |   yes   | 11 (11.25)
    @Test func binaryByHand() throws {
        let r = try ClassificationReport.compute(
            probabilities: [[0.10, 0.90], [0.65, 0.35], [0.83, 0.17], [0.30, 0.70], [0.25, 0.75]],
            labels: [1, 1, 0, 0, 1], labelNames: ["negative", "positive"])
        // true 0: example 2 -> 0, example 3 -> 1; true 1: example 1 -> 0, examples 0, 4 -> 1.
        #expect(r.confusionMatrix == [[1, 1], [1, 2]])
        #expect(r.support == [2, 3])
        #expect(r.predictedCount == [2, 3])
        expectClose(r.accuracy, 3.0 / 5.0, "accuracy")
        // class 0: TP 1, FP 1, FN 1 -> P = R = F1 = 1/2; class 1: TP 2, FP 1, FN 1 -> P = R = F1 = 2/3.
        expectClose(r.precision, [0.5, 2.0 / 3.0], "precision")
        expectClose(r.recall, [0.5, 2.0 / 3.0], "recall")
        expectClose(r.f1, [0.5, 2.0 / 3.0], "f1")
        expectClose(r.macroF1, 7.0 / 12.0, "macro F1")  // (1/2 + 2/3)/2
        // p(true) = .90, .35, .83, .30, .75
        expectClose(
            r.negativeLogLikelihood, -(log(0.90) + log(0.35) + log(0.83) + log(0.30) + log(0.75)) / 5, "NLL")
        // One example per bin: ECE = (|1−.90| + |0−.65| + |1−.83| + |0−.70| + |1−.75|)/5 = 1.87/5 = 0.374.
        expectClose(r.expectedCalibrationError, 0.374, "ECE")
    }

    @Test func logitsAgreeWithProbabilities() throws {
        // The logits path (log-softmax NLL, confidence 1/Σ) against softmax first, then the probability path.
        let logits: [[Double]] = [[2, -1], [0.3, 0.1], [-0.5, 1.5], [4, 4.5], [0, 0], [-3, 2]]
        let labels = [0, 1, 1, 0, 1, 1]
        let names = ["no", "yes"]
        for temperature in [1.0, 0.7, 2.5] {
            let fromLogits = try ClassificationReport.compute(
                logits: logits, labels: labels, labelNames: names, temperature: temperature)
            let probabilities = try TemperatureScaling.apply(logits: logits, temperature: temperature)
            let fromProbabilities = try ClassificationReport.compute(
                probabilities: probabilities, labels: labels, labelNames: names)
            #expect(fromLogits.confusionMatrix == fromProbabilities.confusionMatrix)
            #expect(fromLogits.binCounts == fromProbabilities.binCounts)
            expectClose(fromLogits.accuracy, fromProbabilities.accuracy, "accuracy T=\(temperature)")
            expectClose(
                fromLogits.negativeLogLikelihood, fromProbabilities.negativeLogLikelihood, "NLL T=\(temperature)")
            expectClose(
                fromLogits.expectedCalibrationError, fromProbabilities.expectedCalibrationError, "ECE T=\(temperature)")
        }
    }

    // MARK: - Edge cases

    @Test func classNeverPredicted() throws {
        // Predictions 0, 1, 0, 1 for labels 0, 1, 2, 2: class 2 has support 2 and no predictions.
        let r = try ClassificationReport.compute(
            probabilities: [[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1]],
            labels: [0, 1, 2, 2], labelNames: ["a", "b", "c"])
        #expect(r.confusionMatrix == [[1, 0, 0], [0, 1, 0], [1, 1, 0]])
        #expect(r.predictedCount == [2, 2, 0])
        // class 0 and 1: TP 1, FP 1, FN 0 -> P 1/2, R 1, F1 2/3; class 2: precision 0 (never predicted), recall 0.
        expectClose(r.precision, [0.5, 0.5, 0], "precision")
        expectClose(r.recall, [1, 1, 0], "recall")
        expectClose(r.f1, [2.0 / 3.0, 2.0 / 3.0, 0], "f1")
        expectClose(r.macroF1, 4.0 / 9.0, "macro F1")
        expectClose(r.accuracy, 0.5, "accuracy")
    }

    @Test func classPredictedButAbsentAndClassUnseen() throws {
        // Four classes, labels 0, 0, 1; predictions 0, 2, 1. Class 2 is predicted but has no support
        // (precision 0, recall 0); class 3 has neither (F1 0, still counted in the macro mean).
        let r = try ClassificationReport.compute(
            probabilities: [[0.7, 0.1, 0.1, 0.1], [0.3, 0.1, 0.5, 0.1], [0.1, 0.6, 0.2, 0.1]],
            labels: [0, 0, 1], labelNames: ["a", "b", "c", "d"])
        #expect(r.confusionMatrix == [[1, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
        #expect(r.support == [2, 1, 0, 0])
        #expect(r.predictedCount == [1, 1, 1, 0])
        // class 0: TP 1, FP 0, FN 1 -> P 1, R 1/2, F1 2/3; class 1: all 1; class 2: TP 0 -> 0; class 3: 0.
        expectClose(r.precision, [1, 1, 0, 0], "precision")
        expectClose(r.recall, [0.5, 1, 0, 0], "recall")
        expectClose(r.f1, [2.0 / 3.0, 1, 0, 0], "f1")
        expectClose(r.macroF1, (2.0 / 3.0 + 1) / 4, "macro F1")
    }

    @Test func allCorrect() throws {
        // Every prediction right: each bin's |correct_b − Σconf_b| = n_b − Σconf_b, so
        // ECE = mean(1 − conf) = ((1−.9) + (1−.7) + (1−.55))/3 = 0.85/3 whatever the bins.
        let probabilities: [[Double]] = [[0.9, 0.1], [0.3, 0.7], [0.55, 0.45]]
        let labels = [0, 1, 0]
        for bins in [1, 4, 15, 100] {
            let r = try ClassificationReport.compute(
                probabilities: probabilities, labels: labels, labelNames: ["x", "y"], bins: bins)
            expectClose(r.accuracy, 1, "accuracy")
            expectClose(r.macroF1, 1, "macro F1")
            expectClose(r.expectedCalibrationError, 0.85 / 3, "ECE, \(bins) bins")
            expectClose(r.expectedCalibrationError, 1 - r.meanConfidence, "ECE = 1 − mean confidence")
            #expect(r.binCounts.count == bins)
        }
    }

    @Test func oneExample() throws {
        // Right: accuracy 1; class 0 has neither support nor predictions (F1 0), class 1 F1 1 -> macro 1/2.
        let right = try ClassificationReport.compute(
            probabilities: [[0.3, 0.7]], labels: [1], labelNames: ["x", "y"])
        #expect(right.confusionMatrix == [[0, 0], [0, 1]])
        expectClose(right.accuracy, 1, "accuracy")
        expectClose(right.f1, [0, 1], "f1")
        expectClose(right.macroF1, 0.5, "macro F1")
        expectClose(right.negativeLogLikelihood, -log(0.7), "NLL")
        expectClose(right.expectedCalibrationError, 0.3, "ECE")  // |1 − 0.7|
        // Wrong: everything 0; ECE = |0 − 0.7|.
        let wrong = try ClassificationReport.compute(
            probabilities: [[0.3, 0.7]], labels: [0], labelNames: ["x", "y"])
        expectClose(wrong.accuracy, 0, "accuracy")
        expectClose(wrong.macroF1, 0, "macro F1")
        expectClose(wrong.negativeLogLikelihood, -log(0.3), "NLL")
        expectClose(wrong.expectedCalibrationError, 0.7, "ECE")
    }

    @Test func confidenceExactlyOne() throws {
        // c = 1 would be bin Int(1·15) = 15, one past the end: it goes to the last bin, 14.
        let r = try ClassificationReport.compute(
            probabilities: [[1, 0, 0], [0, 1, 0]], labels: [0, 2], labelNames: ["a", "b", "c"])
        var counts = Array(repeating: 0, count: 15)
        counts[14] = 2
        #expect(r.binCounts == counts)
        // Bin 14: one right, one wrong, both at confidence 1: ECE = (2/2)·|1/2 − 1| = 1/2.
        expectClose(r.expectedCalibrationError, 0.5, "ECE")
        // p(true) = 1 and 0: the 0 is floored at leastNormalMagnitude, so NLL = (0 + 708.39...)/2, finite.
        expectClose(r.negativeLogLikelihood, -log(Double.leastNormalMagnitude) / 2, "NLL")
        #expect(r.negativeLogLikelihood.isFinite)
    }

    @Test func binEdgesAndTies() throws {
        // With 4 bins the edges 0.25, 0.5, 0.75 are exact in Double. Bins are left-closed: c = 0.5 goes to
        // bin 2 = [0.5, 0.75), c = 0.75 to bin 3. The tie [0.5, 0.5] predicts the lower class id, 0.
        let r = try ClassificationReport.compute(
            probabilities: [[0.5, 0.5], [0.25, 0.75], [0.75, 0.25]], labels: [0, 0, 0], labelNames: ["a", "b"],
            bins: 4)
        #expect(r.binCounts == [0, 0, 1, 2])
        #expect(r.confusionMatrix == [[2, 1], [0, 0]])
        // bin 2: n 1, acc 1, conf .5; bin 3: n 2, acc 1/2 (right, wrong), conf .75.
        // ECE = (1/3)·0.5 + (2/3)·0.25 = 1/3.
        expectClose(r.expectedCalibrationError, 1.0 / 3.0, "ECE")
    }

    // MARK: - Choosing a metric

    @Test func metricsByName() throws {
        let r = try ClassificationReport.compute(
            probabilities: Self.threeClassProbabilities, labels: Self.threeClassLabels, labelNames: Self.threeClassNames
        )
        #expect(r.metric(named: "accuracy") == r.accuracy)
        #expect(r.metric(named: "macro_f1") == r.macroF1)
        #expect(r.metric(named: "loss") == r.negativeLogLikelihood)
        #expect(r.metric(named: "nll") == r.negativeLogLikelihood)
        #expect(r.metric(named: "ece") == r.expectedCalibrationError)
        #expect(r.metric(named: "f1") == nil)
        #expect(r.metric(named: "Accuracy") == nil)
        #expect(ClassificationReport.higherIsBetter(metric: "accuracy") == true)
        #expect(ClassificationReport.higherIsBetter(metric: "macro_f1") == true)
        #expect(ClassificationReport.higherIsBetter(metric: "loss") == false)
        #expect(ClassificationReport.higherIsBetter(metric: "nll") == false)
        #expect(ClassificationReport.higherIsBetter(metric: "ece") == false)
        #expect(ClassificationReport.higherIsBetter(metric: "bogus") == nil)
        for name in ClassificationReport.Metric.names { #expect(r.metric(named: name) != nil, "\(name)") }
        let accuracy = ClassificationReport.Metric.accuracy
        #expect(accuracy.isImprovement(0.5, over: nil))
        #expect(accuracy.isImprovement(0.6, over: 0.5))
        #expect(!accuracy.isImprovement(0.5, over: 0.5))
        let loss = ClassificationReport.Metric(name: "nll")!
        #expect(loss == .loss)
        #expect(loss.isImprovement(0.4, over: 0.5))
        #expect(!loss.isImprovement(0.6, over: 0.5))
    }

    // MARK: - Printing and saving

    @Test func jsonAndCodable() throws {
        let r = try ClassificationReport.compute(
            probabilities: Self.threeClassProbabilities, labels: Self.threeClassLabels, labelNames: Self.threeClassNames
        )
        let text = r.jsonText(pretty: false)
        let object = try #require(
            try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        #expect(object["count"] as? Int == 7)
        // Numbers are written exactly (shortest round-trip form); Linux's JSONSerialization reads them back
        // through NSDecimalNumber, which can be 1 ulp off, so check the text for exactness and the parse loosely.
        for (key, value) in [
            ("accuracy", r.accuracy), ("macro_f1", r.macroF1), ("ece", r.expectedCalibrationError),
            ("nll", r.negativeLogLikelihood),
        ] {
            #expect(text.contains("\"\(key)\":\(value)"), "\(key)")
            expectClose(try #require(object[key] as? Double), value, key)
        }
        #expect(object["labels"] as? [String] == Self.threeClassNames)
        #expect(object["confusion_matrix"] as? [[Int]] == r.confusionMatrix)
        let perClass = try #require(object["per_class"] as? [String: [String: Any]])
        expectClose(try #require(perClass["neutral"]?["precision"] as? Double), 1.0 / 3.0, "precision")
        #expect(perClass["neutral"]?["predicted"] as? Int == 3)
        #expect(perClass["negative"]?["support"] as? Int == 3)
        #expect(text.hasPrefix("{\"accuracy\":"))  // sorted keys

        let encoded = try JSONEncoder().encode(r)
        let keys = try #require(try JSONSerialization.jsonObject(with: encoded) as? [String: Any]).keys
        #expect(keys.contains("macro_f1") && keys.contains("confusion_matrix") && keys.contains("label_names"))
        #expect(try JSONDecoder().decode(ClassificationReport.self, from: encoded) == r)
    }

    // MARK: - Bad input

    @Test func badInputIsRejected() {
        let names = ["a", "b"]
        func rejects(
            _ argument: String, _ fragment: String, sourceLocation: SourceLocation = #_sourceLocation,
            _ body: () throws -> Void
        ) {
            do {
                try body()
                Issue.record("expected an error about \(argument)", sourceLocation: sourceLocation)
            } catch let error as ClassificationMetricsError {
                #expect(error.argument == argument, "\(error)", sourceLocation: sourceLocation)
                #expect(error.description.contains(fragment), "\(error)", sourceLocation: sourceLocation)
            } catch {
                Issue.record("unexpected \(error)", sourceLocation: sourceLocation)
            }
        }
        rejects("labels", "example 1: expected a class id in 0..<2, found 2") {
            _ = try ClassificationReport.compute(probabilities: [[1, 0], [0, 1]], labels: [0, 2], labelNames: names)
        }
        rejects("probabilities", "example 1: expected 2 values, found 3") {
            _ = try ClassificationReport.compute(
                probabilities: [[1, 0], [0.5, 0.25, 0.25]], labels: [0, 1], labelNames: names)
        }
        rejects("probabilities", "expected 2 examples × 2 classes = 4 values, found 3") {
            _ = try ClassificationReport.compute(probabilities: [1, 0, 1], labels: [0, 1], labelNames: names)
        }
        rejects("probabilities", "example 0: expected a row summing to 1") {
            _ = try ClassificationReport.compute(probabilities: [[2.5, 1]], labels: [0], labelNames: names)
        }
        rejects("probabilities", "example 0, class 1: expected a finite probability") {
            _ = try ClassificationReport.compute(probabilities: [[1, .nan]], labels: [0], labelNames: names)
        }
        rejects("labels", "expected at least 1 example") {
            _ = try ClassificationReport.compute(probabilities: [[Double]](), labels: [], labelNames: names)
        }
        rejects("labelNames", "expected distinct names, found \"a\" twice") {
            _ = try ClassificationReport.compute(probabilities: [[1, 0]], labels: [0], labelNames: ["a", "a"])
        }
        rejects("bins", "expected at least 1, found 0") {
            _ = try ClassificationReport.compute(probabilities: [[1, 0]], labels: [0], labelNames: names, bins: 0)
        }
        rejects("logits", "example 0, class 0: expected a finite number") {
            _ = try ClassificationReport.compute(logits: [[.infinity, 0]], labels: [0], labelNames: names)
        }
        rejects("temperature", "expected a finite number > 0, found 0.0") {
            _ = try ClassificationReport.compute(logits: [[1, 0]], labels: [0], labelNames: names, temperature: 0)
        }
    }
}
