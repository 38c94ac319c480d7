import LockstepData
import LockstepConfig
import LockstepCheckpoints

/// The coordinator's side of a fine-tuning evaluation: turns the dev logits gathered from the workers into
/// metrics, fits the temperature, and keeps track of the best evaluation and of patience.
public final class DevSetJudge {
    public let labels: [Int]
    public let labelNames: [String]
    let calibrate: Bool
    let patience: Int
    public private(set) var selection: ModelSelection
    /// The temperature fitted at the latest evaluation (1 before any, or with calibration off).
    public private(set) var temperature: Double

    /// What one evaluation showed.
    public struct Verdict {
        public var report: ClassificationReport
        /// ECE of the probabilities after temperature scaling.
        public var calibratedECE: Double
        public var improved: Bool
        /// Patience ran out: stop after this evaluation.
        public var stop: Bool
    }

    public init(config: RunConfig, labelNames: [String], resumed: CheckpointState?) throws {
        guard let settings = config.classification, let validation = config.data.validation else {
            throw ConfigError(file: "<config>", key: "data.validation", message: "a dev set needs task: classification and data.validation")
        }
        let dev = try config.labeledSet(pattern: validation, labels: LabelMap(names: labelNames))
        labels = dev.examples.map { Int($0.label) }
        self.labelNames = labelNames
        calibrate = settings.calibrate
        patience = settings.patience
        selection = resumed?.selection ?? ModelSelection(metric: settings.metric)
        temperature = resumed?.temperature ?? 1
    }

    /// Judges the dev logits (N × K, dev order) of the model after step `step`.
    public func judge(logits: [Float], step: Int) throws -> Verdict {
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
