import LockstepConfig

/// Model selection during fine-tuning: the dev metrics of the latest evaluation, and the best evaluation so
/// far by the configured metric. Stored in each checkpoint's `state.json`, so that a resumed run keeps the same
/// best checkpoint and patience count.
public struct ModelSelection: Codable, Equatable, Sendable {
    public var metric: SelectionMetric
    /// Metrics of the latest evaluation by name (`accuracy`, `macro_f1`, `loss`, `ece`, ...).
    public var latest: [String: Double]
    /// Step and value of the best evaluation so far; nil before the first.
    public var bestStep: Int?
    public var bestValue: Double?
    /// Evaluations since the best one (early stopping counts these against `classification.patience`).
    public var evaluationsWithoutGain: Int

    public init(metric: SelectionMetric) {
        self.metric = metric
        latest = [:]
        evaluationsWithoutGain = 0
    }
}
