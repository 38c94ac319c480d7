import Foundation
import LockstepConfig

// Evaluation of a sequence classifier on a labeled set (issue 7): accuracy, macro-F1, per-class precision,
// recall and F1, the confusion matrix, mean negative log-likelihood and expected calibration error.
//
// Shapes: N examples, C classes. Probabilities and logits are row-major, one row of C values per example,
// either as `[[Double]]` (N rows of C) or flat `[Double]` (N·C values). Labels are class ids in 0..<C, the
// index into `labelNames`.

// MARK: - Errors

/// Inputs that cannot be evaluated: mismatched shapes, a label outside the classes, non-finite numbers.
///
/// `argument` names the parameter at fault (`labels`, `probabilities`, ...) and `message` says what was found
/// and what was expected, with the example (row) index where one is at fault.
public struct ClassificationMetricsError: Error, Equatable, CustomStringConvertible {
    public var argument: String
    public var message: String
    public var description: String { "\(argument): \(message)" }
}

// MARK: - Report

/// The metrics of a classifier on one labeled set.
///
/// Definitions, with `TP_k` the examples of true class k predicted as k, `FP_k` those predicted as k but of
/// another class, `FN_k` those of class k predicted as another class:
/// - predicted class: the argmax of the row; ties go to the lowest class id.
/// - `accuracy`: correct predictions / N.
/// - `precision[k]` = TP/(TP+FP), 0 when class k was never predicted (so a class absent from the labels but
///   predicted has precision 0).
/// - `recall[k]` = TP/(TP+FN), 0 when class k has no support (no example of it).
/// - `f1[k]` = 2·P·R/(P+R), computed as the equal 2·TP/(2·TP+FP+FN); 0 when TP = 0, which includes a class
///   with neither predictions nor support (0/0 taken as 0).
/// - `macroF1`: the plain mean of `f1` over all C classes, a class with neither predictions nor support
///   counting as 0. (scikit-learn instead averages only over classes seen in labels or predictions; the two
///   agree whenever every class occurs in the labels.)
/// - `negativeLogLikelihood`: mean over examples of −log p(true class), the cross-entropy loss. From
///   probabilities, p is floored at `Double.leastNormalMagnitude` so a zero probability (a Float softmax that
///   underflowed) costs about 708 instead of infinity; from logits it is computed exactly with a
///   max-subtracted log-softmax.
/// - `expectedCalibrationError` (ECE) with B equal-width bins over confidence = the largest probability of the
///   row (the predicted class's): ECE = Σ_b (n_b/N)·|acc_b − conf_b|, with n_b the examples in bin b, acc_b
///   their accuracy and conf_b their mean confidence (empty bins contribute 0). It is computed as the equal
///   Σ_b |correct_b − Σconfidence_b| / N. The bin of confidence c is `min(Int(c·B), B−1)` (c·B in Double):
///   bins are left-closed, [b/B, (b+1)/B), so a confidence exactly on an edge b/B goes to the bin above it,
///   except the last bin, which is closed and so holds c = 1.0 (and anything above 1 from rounding).
///   Guo et al. (2017) use right-closed bins instead; the two differ only for confidences exactly on an edge.
///
/// Arrays indexed by class (`precision`, `recall`, `f1`, `support`, `predictedCount`) follow `labelNames`
/// order. `confusionMatrix[t][p]` counts examples of true class t predicted as p (rows: true label, columns:
/// predicted), so row sums are `support` and column sums `predictedCount`.
///
/// Encodes (Codable) with snake_case keys; `asJSON` gives a friendlier nested form for printing.
public struct ClassificationReport: Codable, Equatable, Sendable {
    /// Class names, index = class id.
    public var labelNames: [String]
    /// N, the number of examples.
    public var count: Int
    public var accuracy: Double
    public var macroF1: Double
    /// Per class, in `labelNames` order.
    public var precision: [Double]
    public var recall: [Double]
    public var f1: [Double]
    /// Examples whose true class is k (row sums of the confusion matrix).
    public var support: [Int]
    /// Examples predicted as class k (column sums of the confusion matrix).
    public var predictedCount: [Int]
    /// C×C, rows = true class, columns = predicted class.
    public var confusionMatrix: [[Int]]
    /// Mean −log p(true class): the evaluation loss.
    public var negativeLogLikelihood: Double
    /// Mean confidence (largest probability) over examples, to set beside `accuracy`.
    public var meanConfidence: Double
    public var expectedCalibrationError: Double
    /// Per confidence bin (B entries), for a reliability diagram: examples, their accuracy and their mean
    /// confidence (both 0 for an empty bin).
    public var binCounts: [Int]
    public var binAccuracy: [Double]
    public var binConfidence: [Double]

    /// The number of ECE bins the issue asks for.
    public static let defaultBins = 15

    enum CodingKeys: String, CodingKey {
        case labelNames = "label_names"
        case count, accuracy
        case macroF1 = "macro_f1"
        case precision, recall, f1, support
        case predictedCount = "predicted_count"
        case confusionMatrix = "confusion_matrix"
        case negativeLogLikelihood = "nll"
        case meanConfidence = "mean_confidence"
        case expectedCalibrationError = "ece"
        case binCounts = "bin_counts"
        case binAccuracy = "bin_accuracy"
        case binConfidence = "bin_confidence"
    }
}

// MARK: - Computing a report

extension ClassificationReport {
    /// Metrics from predicted probabilities.
    ///
    /// - Parameters:
    ///   - probabilities: N rows of C = `labelNames.count` probabilities each, every value finite and ≥ 0 and
    ///     each row summing to 1 within 1e-3 (Float softmax rounding passes; logits by mistake do not).
    ///   - labels: N true class ids in 0..<C.
    ///   - labelNames: the C class names, distinct.
    ///   - bins: B, the number of equal-width confidence bins for ECE (≥ 1).
    /// - Throws: `ClassificationMetricsError` naming the argument and example at fault.
    /// - Complexity: O(N·C + C² + B).
    public static func compute(
        probabilities: [[Double]], labels: [Int], labelNames: [String], bins: Int = defaultBins
    ) throws -> ClassificationReport {
        let flat = try flatten(probabilities, argument: "probabilities", classCount: labelNames.count)
        return try compute(probabilities: flat, labels: labels, labelNames: labelNames, bins: bins)
    }

    /// Metrics from predicted probabilities, flat: N·C values, row-major (see the `[[Double]]` form).
    public static func compute(
        probabilities: [Double], labels: [Int], labelNames: [String], bins: Int = defaultBins
    ) throws -> ClassificationReport {
        try checkShapes(
            values: probabilities, argument: "probabilities", labels: labels, labelNames: labelNames, bins: bins)
        let c = labelNames.count
        try probabilities.withUnsafeBufferPointer { p in
            for i in 0..<labels.count {
                var sum = 0.0
                for k in 0..<c {
                    let v = p[i &* c &+ k]
                    guard v.isFinite, v >= 0 else {
                        throw ClassificationMetricsError(
                            argument: "probabilities",
                            message: "example \(i), class \(k): expected a finite probability ≥ 0, found \(v)")
                    }
                    sum += v
                }
                guard abs(sum - 1) <= 1e-3 else {
                    throw ClassificationMetricsError(
                        argument: "probabilities",
                        message: "example \(i): expected a row summing to 1 (probabilities, not logits), found \(sum)")
                }
            }
        }
        var tally = Tally(classCount: c, bins: bins)
        probabilities.withUnsafeBufferPointer { p in
            for i in 0..<labels.count {
                let row = UnsafeBufferPointer(rebasing: p[(i &* c)..<(i &* c &+ c)])
                let predicted = argmax(row)
                let y = labels[i]
                tally.add(
                    label: y, predicted: predicted, confidence: row[predicted],
                    logProbabilityOfLabel: Foundation.log(max(row[y], Double.leastNormalMagnitude)))
            }
        }
        return tally.report(labelNames: labelNames)
    }

    /// Metrics from logits, with probabilities softmax(logits / temperature) computed stably (max-subtracted)
    /// and the log-likelihood taken from the log-softmax directly, so it never overflows or underflows.
    ///
    /// - Parameters:
    ///   - logits: N rows of C = `labelNames.count` finite values.
    ///   - temperature: T > 0; 1 gives the raw model, a fitted `TemperatureScaling` value the calibrated one.
    ///     Accuracy, F1 and the confusion matrix do not depend on T; NLL and ECE do.
    /// - Throws: `ClassificationMetricsError` naming the argument and example at fault.
    public static func compute(
        logits: [[Double]], labels: [Int], labelNames: [String], temperature: Double = 1, bins: Int = defaultBins
    ) throws -> ClassificationReport {
        let flat = try flatten(logits, argument: "logits", classCount: labelNames.count)
        return try compute(
            logits: flat, labels: labels, labelNames: labelNames, temperature: temperature, bins: bins)
    }

    /// Metrics from logits, flat: N·C values, row-major (see the `[[Double]]` form).
    public static func compute(
        logits: [Double], labels: [Int], labelNames: [String], temperature: Double = 1, bins: Int = defaultBins
    ) throws -> ClassificationReport {
        try checkShapes(values: logits, argument: "logits", labels: labels, labelNames: labelNames, bins: bins)
        try checkFinite(logits, argument: "logits", classCount: labelNames.count)
        try checkTemperature(temperature)
        let c = labelNames.count
        let inverseT = 1 / temperature
        var tally = Tally(classCount: c, bins: bins)
        logits.withUnsafeBufferPointer { z in
            for i in 0..<labels.count {
                let row = UnsafeBufferPointer(rebasing: z[(i &* c)..<(i &* c &+ c)])
                let predicted = argmax(row)
                let top = row[predicted]
                // softmax_k = exp((z_k − max)·s) / Σ; the max term is exp(0) = 1, so confidence = 1 / Σ.
                var sum = 0.0
                for k in 0..<c { sum += exp((row[k] - top) * inverseT) }
                let y = labels[i]
                tally.add(
                    label: y, predicted: predicted, confidence: 1 / sum,
                    logProbabilityOfLabel: (row[y] - top) * inverseT - Foundation.log(sum))
            }
        }
        return tally.report(labelNames: labelNames)
    }

    /// Counts gathered in one pass over the examples, turned into a report at the end.
    private struct Tally {
        let classCount: Int
        let bins: Int
        var confusion: [Int]  // C×C, row-major, [true][predicted]
        var binCounts: [Int]
        var binCorrect: [Int]
        var binConfidenceSum: [Double]
        var logLikelihoodSum = 0.0
        var confidenceSum = 0.0
        var count = 0

        init(classCount: Int, bins: Int) {
            self.classCount = classCount
            self.bins = bins
            confusion = Array(repeating: 0, count: classCount * classCount)
            binCounts = Array(repeating: 0, count: bins)
            binCorrect = Array(repeating: 0, count: bins)
            binConfidenceSum = Array(repeating: 0, count: bins)
        }

        mutating func add(label: Int, predicted: Int, confidence: Double, logProbabilityOfLabel: Double) {
            confusion[label &* classCount &+ predicted] &+= 1
            // Left-closed bins; the last one also takes c = 1 (see the type's documentation).
            let bin = max(0, min(Int(confidence * Double(bins)), bins - 1))
            binCounts[bin] &+= 1
            if label == predicted { binCorrect[bin] &+= 1 }
            binConfidenceSum[bin] += confidence
            confidenceSum += confidence
            logLikelihoodSum += logProbabilityOfLabel
            count &+= 1
        }

        func report(labelNames: [String]) -> ClassificationReport {
            let c = classCount
            let n = Double(count)
            let matrix = (0..<c).map { t in Array(confusion[(t * c)..<(t * c + c)]) }
            let support = matrix.map { $0.reduce(0, +) }
            let predictedCount = (0..<c).map { p in matrix.reduce(0) { $0 + $1[p] } }
            let truePositives = (0..<c).map { matrix[$0][$0] }
            var precision: [Double] = []
            var recall: [Double] = []
            var f1: [Double] = []
            for k in 0..<c {
                let tp = truePositives[k]
                let fp = predictedCount[k] - tp
                let fn = support[k] - tp
                precision.append(predictedCount[k] == 0 ? 0 : Double(tp) / Double(predictedCount[k]))
                recall.append(support[k] == 0 ? 0 : Double(tp) / Double(support[k]))
                f1.append(tp == 0 ? 0 : Double(2 * tp) / Double(2 * tp + fp + fn))
            }
            var ece = 0.0
            for b in 0..<bins { ece += abs(Double(binCorrect[b]) - binConfidenceSum[b]) }
            return ClassificationReport(
                labelNames: labelNames,
                count: count,
                accuracy: Double(truePositives.reduce(0, +)) / n,
                macroF1: f1.reduce(0, +) / Double(c),
                precision: precision, recall: recall, f1: f1,
                support: support, predictedCount: predictedCount, confusionMatrix: matrix,
                negativeLogLikelihood: -logLikelihoodSum / n,
                meanConfidence: confidenceSum / n,
                expectedCalibrationError: ece / n,
                binCounts: binCounts,
                binAccuracy: (0..<bins).map { binCounts[$0] == 0 ? 0 : Double(binCorrect[$0]) / Double(binCounts[$0]) },
                binConfidence: (0..<bins).map { binCounts[$0] == 0 ? 0 : binConfidenceSum[$0] / Double(binCounts[$0]) })
        }
    }
}

// MARK: - Choosing a metric

extension ClassificationReport {
    /// The dev metric that picks the best checkpoint (`classification.metric`).
    public typealias Metric = SelectionMetric

    /// The value of `metric` in this report.
    public func value(of metric: Metric) -> Double {
        switch metric {
        case .accuracy: return accuracy
        case .macroF1: return macroF1
        case .loss: return negativeLogLikelihood
        case .ece: return expectedCalibrationError
        }
    }

    /// The value of the metric spelled `name` (see `Metric.init?(name:)`), nil for an unknown name.
    public func metric(named name: String) -> Double? {
        Metric(name: name).map { value(of: $0) }
    }

    /// Whether larger values of the metric spelled `name` are better, nil for an unknown name.
    public static func higherIsBetter(metric name: String) -> Bool? {
        Metric(name: name)?.higherIsBetter
    }
}

// MARK: - Printing

extension ClassificationReport {
    /// A nested dictionary with snake_case keys for `JSONSerialization` (all values are Int, Double, String,
    /// arrays or dictionaries of those, and every Double is finite):
    /// `count`, `accuracy`, `macro_f1`, `nll`, `mean_confidence`, `ece`, `bins`, `labels` (names in id order),
    /// `per_class` (`{name: {precision, recall, f1, support, predicted}}`), `confusion_matrix` (rows true,
    /// columns predicted, in `labels` order), and `calibration` (`{counts, accuracy, confidence}` per bin).
    public var asJSON: [String: Any] {
        var perClass: [String: Any] = [:]
        for (k, name) in labelNames.enumerated() {
            let entry: [String: Any] = [
                "precision": precision[k], "recall": recall[k], "f1": f1[k],
                "support": support[k], "predicted": predictedCount[k],
            ]
            perClass[name] = entry
        }
        return [
            "count": count,
            "accuracy": accuracy,
            "macro_f1": macroF1,
            "nll": negativeLogLikelihood,
            "mean_confidence": meanConfidence,
            "ece": expectedCalibrationError,
            "bins": binCounts.count,
            "labels": labelNames,
            "per_class": perClass,
            "confusion_matrix": confusionMatrix,
            "calibration": [
                "counts": binCounts, "accuracy": binAccuracy, "confidence": binConfidence,
            ] as [String: Any],
        ]
    }

    /// `asJSON` as text with sorted keys (pretty-printed on request), for `lockstep evaluate`.
    public func jsonText(pretty: Bool = true) -> String {
        var options: JSONSerialization.WritingOptions = [.sortedKeys]
        if pretty { options.insert(.prettyPrinted) }
        // Cannot fail: asJSON holds only JSON-compatible, finite values.
        let data = (try? JSONSerialization.data(withJSONObject: asJSON, options: options)) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }
}

// MARK: - Input checks and helpers shared with TemperatureScaling

extension ClassificationReport {
    /// The index of the largest value, the lowest index on ties.
    static func argmax(_ row: UnsafeBufferPointer<Double>) -> Int {
        var best = 0
        for k in 1..<row.count where row[k] > row[best] { best = k }
        return best
    }

    /// Rows of equal length `classCount`, concatenated.
    static func flatten(_ rows: [[Double]], argument: String, classCount: Int) throws -> [Double] {
        var flat: [Double] = []
        flat.reserveCapacity(rows.count * classCount)
        for (i, row) in rows.enumerated() {
            guard row.count == classCount else {
                throw ClassificationMetricsError(
                    argument: argument, message: "example \(i): expected \(classCount) values, found \(row.count)")
            }
            flat.append(contentsOf: row)
        }
        return flat
    }

    static func checkShapes(
        values: [Double], argument: String, labels: [Int], labelNames: [String], bins: Int
    ) throws {
        guard !labelNames.isEmpty else {
            throw ClassificationMetricsError(argument: "labelNames", message: "expected at least 1 class, found none")
        }
        if let duplicate = firstDuplicate(labelNames) {
            throw ClassificationMetricsError(
                argument: "labelNames", message: "expected distinct names, found \"\(duplicate)\" twice")
        }
        guard bins >= 1 else {
            throw ClassificationMetricsError(argument: "bins", message: "expected at least 1, found \(bins)")
        }
        try checkLabels(values: values, argument: argument, labels: labels, classCount: labelNames.count)
    }

    /// At least one example, N·C values for N labels, every label in 0..<C.
    static func checkLabels(values: [Double], argument: String, labels: [Int], classCount: Int) throws {
        guard !labels.isEmpty else {
            throw ClassificationMetricsError(argument: "labels", message: "expected at least 1 example, found none")
        }
        guard values.count == labels.count * classCount else {
            throw ClassificationMetricsError(
                argument: argument,
                message: "expected \(labels.count) examples × \(classCount) classes = \(labels.count * classCount) "
                    + "values, found \(values.count)")
        }
        for (i, label) in labels.enumerated() where !(0..<classCount).contains(label) {
            throw ClassificationMetricsError(
                argument: "labels", message: "example \(i): expected a class id in 0..<\(classCount), found \(label)")
        }
    }

    static func checkFinite(_ values: [Double], argument: String, classCount: Int) throws {
        if let index = values.firstIndex(where: { !$0.isFinite }) {
            throw ClassificationMetricsError(
                argument: argument,
                message: "example \(index / classCount), class \(index % classCount): expected a finite number, "
                    + "found \(values[index])")
        }
    }

    static func checkTemperature(_ temperature: Double) throws {
        guard temperature.isFinite, temperature > 0 else {
            throw ClassificationMetricsError(
                argument: "temperature", message: "expected a finite number > 0, found \(temperature)")
        }
    }

    private static func firstDuplicate(_ names: [String]) -> String? {
        var seen = Set<String>()
        for name in names where !seen.insert(name).inserted { return name }
        return nil
    }
}
