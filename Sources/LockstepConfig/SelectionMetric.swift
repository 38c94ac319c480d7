/// A single number a configuration can name to pick the best checkpoint or to stop early.
/// Raw values are the configuration spellings; `init?(name:)` also accepts `nll` for `loss`.
public enum SelectionMetric: String, Codable, CaseIterable, Sendable {
    case accuracy
    case macroF1 = "macro_f1"
    /// The mean negative log-likelihood (cross-entropy).
    case loss
    /// Expected calibration error.
    case ece

    /// The metric spelled `name` (`accuracy`, `macro_f1`, `loss` or `nll`, `ece`), nil for anything else.
    public init?(name: String) {
        if name == "nll" {
            self = .loss
            return
        }
        self.init(rawValue: name)
    }

    /// The names `init?(name:)` accepts, for error messages listing the choices.
    public static let names: [String] = ["accuracy", "macro_f1", "loss", "nll", "ece"]

    /// True for accuracy and macro-F1, false for loss and ECE (lower is better).
    public var higherIsBetter: Bool {
        switch self {
        case .accuracy, .macroF1: return true
        case .loss, .ece: return false
        }
    }

    /// Whether `value` strictly improves on `best` (any value improves on no best yet). Ties are not
    /// gains, so early stopping counts them as evaluations without gain.
    public func isImprovement(_ value: Double, over best: Double?) -> Bool {
        guard let best else { return true }
        return higherIsBetter ? value > best : value < best
    }
}
