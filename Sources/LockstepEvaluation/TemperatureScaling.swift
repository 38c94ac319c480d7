import Foundation

/// Temperature scaling (Guo et al., "On Calibration of Modern Neural Networks", 2017): one number T > 0 that
/// divides every logit, fitted on a labeled dev set to minimise the mean negative log-likelihood of
/// softmax(logits / T). T > 1 softens an over-confident model, T < 1 sharpens an under-confident one. The
/// argmax, and so accuracy, F1 and the confusion matrix, do not change.
///
/// Shapes: N examples, C classes; logits row-major, as `[[Double]]` (N rows of C) or flat `[Double]` (N·C).
///
/// How `fit` finds T. With s = 1/T and z_i the logits of example i, y_i its label, the loss is
///
///     L(s) = (1/N) Σ_i [ log Σ_k exp(s·z_ik) − s·z_iy ]
///     L'(s) = (1/N) Σ_i [ E_p[z_i] − z_iy ]          (p = softmax(s·z_i))
///     L''(s) = (1/N) Σ_i Var_p[z_i] ≥ 0
///
/// so L is convex in s, and its minimum is the single root of the increasing function L'. `fit` finds that
/// root in s ∈ [e^−5, e^5] (T from about 0.0067 to 148) by Newton's method safeguarded by bisection: start at
/// s = 1 (T = 1), keep a bracket [lo, hi] with L'(lo) < 0 < L'(hi), take the Newton step when it lands inside
/// the bracket and bisect (geometrically, the range spanning orders of magnitude) otherwise. This converges
/// from any start, quadratically near the root (a handful of passes over the data), and is deterministic.
/// When L' does not change sign in the range the minimum lies on its edge and T is clamped: T = e^5 when even
/// the softest setting still gains from softening (the model does no better than chance, so flatter is
/// better), T = e^−5 when the data are separated and sharper is always better. When every row of logits is
/// constant the loss does not depend on T and `fit` returns 1.
public enum TemperatureScaling {
    /// The range of log T searched: T ∈ [e^−5, e^5].
    public static let logTemperatureRange: ClosedRange<Double> = -5...5

    // MARK: - Fitting

    /// The temperature minimising the mean NLL of softmax(logits / T) over the examples.
    ///
    /// - Parameters:
    ///   - logits: N rows of C finite values (the classifier's outputs before softmax, not probabilities).
    ///   - labels: N true class ids in 0..<C.
    /// - Returns: T in [e^−5, e^5] (see the type's documentation for how, and for the edge cases).
    /// - Throws: `ClassificationMetricsError` for mismatched shapes, labels outside 0..<C, non-finite logits.
    /// - Complexity: O(N·C) per iteration, typically under 10 iterations, at most 200.
    public static func fit(logits: [[Double]], labels: [Int]) throws -> Double {
        let classCount = try rowLength(logits, labels: labels)
        let flat = try ClassificationReport.flatten(logits, argument: "logits", classCount: classCount)
        return try fit(logits: flat, labels: labels, classCount: classCount)
    }

    /// Flat form of `fit(logits:labels:)`: `logits` holds N·C values, row-major, C = `classCount`.
    public static func fit(logits: [Double], labels: [Int], classCount: Int) throws -> Double {
        try checkInputs(logits: logits, labels: labels, classCount: classCount)
        let lo0 = exp(-logTemperatureRange.upperBound)  // smallest s = 1/T
        let hi0 = exp(-logTemperatureRange.lowerBound)  // largest s
        return logits.withUnsafeBufferPointer { z in
            func derivatives(_ s: Double) -> (first: Double, second: Double) {
                lossDerivatives(z, labels: labels, classCount: classCount, inverseTemperature: s)
            }
            var s = 1.0
            var d = derivatives(s)
            if d.second == 0 { return 1 }  // every row constant: the loss ignores T
            // Bracket the root of L'. Start from s = 1 and check the edges only when needed.
            var lo = lo0
            var hi = hi0
            if d.first < 0 {
                lo = s
                if derivatives(hi0).first <= 0 { return 1 / hi0 }
            } else if d.first > 0 {
                hi = s
                if derivatives(lo0).first >= 0 { return 1 / lo0 }
            } else {
                return 1
            }
            for _ in 0..<200 {
                let newton = s - d.first / d.second
                let next = (d.second > 0 && newton > lo && newton < hi) ? newton : (lo * hi).squareRoot()
                let converged = abs(next - s) <= 1e-15 * s
                s = next
                if converged || hi - lo <= 1e-15 * lo { break }
                d = derivatives(s)
                if d.first == 0 { break }
                if d.first < 0 { lo = s } else { hi = s }
            }
            return 1 / s
        }
    }

    // MARK: - Applying

    /// softmax(logits / temperature) row by row, max-subtracted so no exponent overflows.
    ///
    /// - Parameters:
    ///   - logits: N rows of C finite values (rows may differ in length here; each is its own softmax).
    ///   - temperature: T > 0, finite.
    /// - Returns: N rows of C probabilities summing to 1.
    /// - Throws: `ClassificationMetricsError` for a bad temperature or a non-finite logit.
    public static func apply(logits: [[Double]], temperature: Double) throws -> [[Double]] {
        try ClassificationReport.checkTemperature(temperature)
        return try logits.enumerated().map { i, row in
            if let k = row.firstIndex(where: { !$0.isFinite }) {
                throw ClassificationMetricsError(
                    argument: "logits", message: "example \(i), class \(k): expected a finite number, found \(row[k])")
            }
            var out = [Double](repeating: 0, count: row.count)
            row.withUnsafeBufferPointer { z in
                out.withUnsafeMutableBufferPointer { p in softmax(z, inverseTemperature: 1 / temperature, into: p) }
            }
            return out
        }
    }

    /// Flat form of `apply(logits:temperature:)`: N·C values in, N·C probabilities out, row-major.
    public static func apply(logits: [Double], classCount: Int, temperature: Double) throws -> [Double] {
        try ClassificationReport.checkTemperature(temperature)
        guard classCount >= 1, logits.count % classCount == 0 else {
            throw ClassificationMetricsError(
                argument: "logits", message: "expected a multiple of \(classCount) values, found \(logits.count)")
        }
        try ClassificationReport.checkFinite(logits, argument: "logits", classCount: classCount)
        var out = [Double](repeating: 0, count: logits.count)
        logits.withUnsafeBufferPointer { z in
            out.withUnsafeMutableBufferPointer { p in
                for start in stride(from: 0, to: z.count, by: classCount) {
                    let end = start &+ classCount
                    softmax(
                        UnsafeBufferPointer(rebasing: z[start..<end]), inverseTemperature: 1 / temperature,
                        into: UnsafeMutableBufferPointer(rebasing: p[start..<end]))
                }
            }
        }
        return out
    }

    /// Mean negative log-likelihood of softmax(logits / temperature), with a max-subtracted log-softmax:
    /// the quantity `fit` minimises, exposed to report the loss before and after scaling.
    /// - Throws: `ClassificationMetricsError` as `fit` does, and for a bad temperature.
    public static func meanNegativeLogLikelihood(
        logits: [Double], labels: [Int], classCount: Int, temperature: Double
    ) throws -> Double {
        try checkInputs(logits: logits, labels: labels, classCount: classCount)
        try ClassificationReport.checkTemperature(temperature)
        let s = 1 / temperature
        return logits.withUnsafeBufferPointer { z in
            var total = 0.0
            for i in 0..<labels.count {
                let row = UnsafeBufferPointer(rebasing: z[(i &* classCount)..<(i &* classCount &+ classCount)])
                let top = row[ClassificationReport.argmax(row)]
                var sum = 0.0
                for k in 0..<classCount { sum += exp((row[k] - top) * s) }
                total += Foundation.log(sum) - (row[labels[i]] - top) * s
            }
            return total / Double(labels.count)
        }
    }

    /// `[[Double]]` form of `meanNegativeLogLikelihood(logits:labels:classCount:temperature:)`.
    public static func meanNegativeLogLikelihood(
        logits: [[Double]], labels: [Int], temperature: Double
    ) throws -> Double {
        let classCount = try rowLength(logits, labels: labels)
        let flat = try ClassificationReport.flatten(logits, argument: "logits", classCount: classCount)
        return try meanNegativeLogLikelihood(
            logits: flat, labels: labels, classCount: classCount, temperature: temperature)
    }

    // MARK: - Internals

    /// softmax(s·z) into `p` (same length), max-subtracted.
    static func softmax(
        _ z: UnsafeBufferPointer<Double>, inverseTemperature s: Double, into p: UnsafeMutableBufferPointer<Double>
    ) {
        guard !z.isEmpty else { return }
        let top = z[ClassificationReport.argmax(z)]
        var sum = 0.0
        for k in 0..<z.count {
            let e = exp((z[k] - top) * s)
            p[k] = e
            sum += e
        }
        let inverseSum = 1 / sum
        for k in 0..<z.count { p[k] *= inverseSum }
    }

    /// L'(s) and L''(s) of the type's documentation: mean over examples of E_p[z] − z_y and Var_p[z], with
    /// p = softmax(s·z). The variance is taken around the mean (two passes over the row), not as E[z²] − E[z]²,
    /// which cancels badly for confident rows.
    static func lossDerivatives(
        _ z: UnsafeBufferPointer<Double>, labels: [Int], classCount c: Int, inverseTemperature s: Double
    ) -> (first: Double, second: Double) {
        var first = 0.0
        var second = 0.0
        for i in 0..<labels.count {
            let base = i &* c
            var top = z[base]
            for k in 1..<c where z[base &+ k] > top { top = z[base &+ k] }
            var sum = 0.0
            var weighted = 0.0
            for k in 0..<c {
                let e = exp((z[base &+ k] - top) * s)
                sum += e
                weighted += e * z[base &+ k]
            }
            let mean = weighted / sum
            var variance = 0.0
            for k in 0..<c {
                let d = z[base &+ k] - mean
                variance += exp((z[base &+ k] - top) * s) * d * d
            }
            first += mean - z[base &+ labels[i]]
            second += variance / sum
        }
        let n = Double(labels.count)
        return (first / n, second / n)
    }

    /// C, the length of the first row, after checking there is one row per label.
    private static func rowLength(_ logits: [[Double]], labels: [Int]) throws -> Int {
        guard !labels.isEmpty else {
            throw ClassificationMetricsError(argument: "labels", message: "expected at least 1 example, found none")
        }
        guard logits.count == labels.count, let first = logits.first else {
            throw ClassificationMetricsError(
                argument: "logits", message: "expected \(labels.count) rows (one per label), found \(logits.count)")
        }
        return first.count
    }

    private static func checkInputs(logits: [Double], labels: [Int], classCount: Int) throws {
        guard classCount >= 1 else {
            throw ClassificationMetricsError(
                argument: "classCount", message: "expected at least 1, found \(classCount)")
        }
        try ClassificationReport.checkLabels(values: logits, argument: "logits", labels: labels, classCount: classCount)
        try ClassificationReport.checkFinite(logits, argument: "logits", classCount: classCount)
    }
}
