import LockstepData

/// Model selection during fine-tuning: the dev metrics of the latest evaluation, and the best evaluation so
/// far by the configured metric. Stored in each checkpoint's `state.json`, so that a resumed run keeps the same
/// best checkpoint and patience count.
public struct ModelSelection: Codable, Equatable, Sendable {
    public var metric: ClassificationReport.Metric
    /// Metrics of the latest evaluation by name (`accuracy`, `macro_f1`, `loss`, `ece`, ...).
    public var latest: [String: Double]
    /// Step and value of the best evaluation so far; nil before the first.
    public var bestStep: Int?
    public var bestValue: Double?
    /// Evaluations since the best one (early stopping counts these against `classification.patience`).
    public var evaluationsWithoutGain: Int

    public init(metric: ClassificationReport.Metric) {
        self.metric = metric
        latest = [:]
        evaluationsWithoutGain = 0
    }
}

/// The coordinator's side of a fine-tuning evaluation: turns the dev logits gathered from the workers into
/// metrics, fits the temperature, and keeps track of the best evaluation and of patience.
final class DevSetJudge {
    let labels: [Int]
    let labelNames: [String]
    let calibrate: Bool
    let patience: Int
    private(set) var selection: ModelSelection
    /// The temperature fitted at the latest evaluation (1 before any, or with calibration off).
    private(set) var temperature: Double

    /// What one evaluation showed.
    struct Verdict {
        var report: ClassificationReport
        /// ECE of the probabilities after temperature scaling.
        var calibratedECE: Double
        var improved: Bool
        /// Patience ran out: stop after this evaluation.
        var stop: Bool
    }

    init(config: RunConfig, labelNames: [String], resumed: CheckpointState?) throws {
        let settings = config.classification!
        let dev = try RunSetup.labeledSet(
            pattern: config.data.validation!, config: config, labels: LabelMap(names: labelNames))
        labels = dev.examples.map { Int($0.label) }
        self.labelNames = labelNames
        calibrate = settings.calibrate
        patience = settings.patience
        selection = resumed?.selection ?? ModelSelection(metric: settings.metric)
        temperature = resumed?.temperature ?? 1
    }

    /// Judges the dev logits (N × K, dev order) of the model after step `step`.
    func judge(logits: [Float], step: Int) throws -> Verdict {
        let values = logits.map(Double.init)
        let report = try ClassificationReport.compute(logits: values, labels: labels, labelNames: labelNames)
        if calibrate {
            temperature = try TemperatureScaling.fit(logits: values, labels: labels, classCount: labelNames.count)
        }
        let calibrated = try ClassificationReport.compute(
            logits: values, labels: labels, labelNames: labelNames, temperature: temperature)
        let value = report.value(of: selection.metric)
        let improved = selection.metric.isImprovement(value, over: selection.bestValue)
        if improved {
            selection.bestValue = value
            selection.bestStep = step
            selection.evaluationsWithoutGain = 0
        } else {
            selection.evaluationsWithoutGain += 1
        }
        selection.latest = [
            "accuracy": report.accuracy, "macro_f1": report.macroF1, "loss": report.negativeLogLikelihood,
            "ece": report.expectedCalibrationError, "ece_calibrated": calibrated.expectedCalibrationError,
            "temperature": temperature,
        ]
        return Verdict(
            report: report, calibratedECE: calibrated.expectedCalibrationError, improved: improved,
            stop: patience > 0 && selection.evaluationsWithoutGain >= patience)
    }
}
