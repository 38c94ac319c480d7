import Foundation

/// The learning rate as one pure function of the step, owned by the coordinator.
///
/// Steps are numbered from 0 (step 0 is the first optimizer update) up to `totalSteps - 1`, and every kind
/// shares the same linear warmup (as in llm.c and nanoGPT), then follows its own shape:
///
/// 1. warmup, for `step < warmupSteps`: `peak * (step + 1) / warmupSteps`, so the last warmup step uses
///    `peak`. Warmup ignores `minimum`; the minimum bounds only what comes after.
/// 2. after warmup, with `p` the decay progress, `0` at step `warmupSteps` and `1` at step `totalSteps - 1`:
///    - `constant`: `peak`.
///    - `cosine`: `minimum + (peak - minimum) * (1 + cos(pi * p)) / 2`.
///    - `linear`: `peak + (minimum - peak) * p`.
///    - `warmupStableDecay`: `peak` until the last `decaySteps` steps, which fall linearly (linear rather
///      than cosine: the common choice in the WSD papers, and easy to read off a plot) so that the first
///      decay step is already below `peak` and the last step, `totalSteps - 1`, uses `minimum`.
///    - `inverseSquareRoot`: `peak * sqrt(max(warmupSteps, 1) / (step + 1))`, continuous with the warmup,
///      never below `minimum`, and indifferent to `totalSteps`.
/// 3. at and after `totalSteps` (a run extended past its plan): the value at step `totalSteps - 1`, except
///    `inverseSquareRoot`, which keeps falling toward `minimum`.
///
/// The last update of a decaying schedule therefore uses exactly `minimum`. After warmup no kind ever goes
/// below `minimum` or above `peak`.
///
/// In the YAML configuration this is the `schedule:` section with keys `kind`, `learning_rate`,
/// `min_learning_rate`, `warmup_steps` and `decay_steps`. `totalSteps` is not a schedule key: it comes from
/// `training.max_steps`, and the config loader sets it after decoding (it decodes as `total_steps` when present,
/// as in a checkpoint's saved settings, and as 0, which `validate()` rejects, when absent).
public struct LearningRateSchedule: Codable, Equatable, Sendable {
    /// The shape after warmup. Raw values are the YAML spellings.
    public enum Kind: String, Codable, CaseIterable, Sendable {
        case constant
        case cosine
        case linear
        case warmupStableDecay = "warmup_stable_decay"
        case inverseSquareRoot = "inverse_sqrt"
    }

    public var kind: Kind
    /// The learning rate at the end of warmup (`schedule.learning_rate`).
    public var peak: Double
    /// The floor of the decay (`schedule.min_learning_rate`, default 0).
    public var minimum: Double
    /// Steps of linear warmup (`schedule.warmup_steps`, default 0).
    public var warmupSteps: Int
    /// Steps in the whole run, from `training.max_steps`.
    public var totalSteps: Int
    /// Length of the final decay of `warmupStableDecay` (`schedule.decay_steps`); only that kind uses it.
    public var decaySteps: Int?

    public init(
        kind: Kind, peak: Double, minimum: Double = 0, warmupSteps: Int = 0, totalSteps: Int,
        decaySteps: Int? = nil
    ) {
        self.kind = kind
        self.peak = peak
        self.minimum = minimum
        self.warmupSteps = warmupSteps
        self.totalSteps = totalSteps
        self.decaySteps = decaySteps
    }

    // MARK: - The function of the step

    /// The learning rate for the update numbered `step` (0 is the first update).
    /// - Precondition: `step >= 0`. Call `validate()` once beforehand; an invalid schedule gives
    ///   unspecified (but finite where possible) values rather than trapping.
    public func learningRate(atStep step: Int) -> Double {
        precondition(step >= 0, "learning rate asked for negative step \(step)")
        // 1. Warmup.
        if step < warmupSteps {
            return peak * Double(step + 1) / Double(warmupSteps)
        }
        switch kind {
        case .constant:
            return peak
        case .cosine:
            let p = decayProgress(step: step, decayStart: warmupSteps)
            return between(weightOnPeak: 0.5 * (1 + cos(Double.pi * p)))
        case .linear:
            let p = decayProgress(step: step, decayStart: warmupSteps)
            return between(weightOnPeak: 1 - p)
        case .warmupStableDecay:
            // The decay's `decaySteps` steps all lie below peak: start one step before the first of them.
            let decay = max(decaySteps ?? 0, 1)
            let p = decayProgress(step: step, decayStart: totalSteps - decay - 1)
            return between(weightOnPeak: 1 - p)
        case .inverseSquareRoot:
            let value = peak * (Double(max(warmupSteps, 1)) / Double(step + 1)).squareRoot()
            return max(minimum, value)
        }
    }

    /// `peak` for weight 1 and `minimum` for weight 0, both exactly, and never outside them in between
    /// (the clamp guards against a last-bit rounding excursion).
    private func between(weightOnPeak w: Double) -> Double {
        min(peak, max(minimum, w * peak + (1 - w) * minimum))
    }

    /// 0 at `decayStart`, 1 at the last step `totalSteps - 1`, clamped to [0, 1] outside.
    private func decayProgress(step: Int, decayStart: Int) -> Double {
        let span = totalSteps - 1 - decayStart
        if span <= 0 { return step >= totalSteps - 1 ? 1 : 0 }
        return min(1, max(0, Double(step - decayStart) / Double(span)))
    }

    // MARK: - Checks

    /// A schedule setting that cannot work, named by its configuration key.
    public struct ValidationError: Error, Equatable, CustomStringConvertible {
        /// The configuration key at fault, e.g. `schedule.warmup_steps`.
        public var key: String
        /// What was found and what was expected.
        public var message: String
        public var description: String { "\(key): \(message)" }
    }

    /// Rejects settings that cannot work, naming the configuration key.
    /// - Throws: `ValidationError` for the first problem found.
    public func validate() throws {
        func fail(_ key: String, _ message: String) -> ValidationError {
            ValidationError(key: "schedule.\(key)", message: message)
        }
        guard peak.isFinite, peak > 0 else {
            throw fail("learning_rate", "expected a positive finite number, found \(peak)")
        }
        guard minimum.isFinite, minimum >= 0, minimum <= peak else {
            throw fail("min_learning_rate", "expected a number from 0 to learning_rate (\(peak)), found \(minimum)")
        }
        guard totalSteps >= 1 else {
            throw ValidationError(
                key: "training.max_steps", message: "the schedule needs at least 1 step, found \(totalSteps)")
        }
        guard warmupSteps >= 0, warmupSteps <= totalSteps else {
            throw fail(
                "warmup_steps", "expected 0 to training.max_steps (\(totalSteps)), found \(warmupSteps)")
        }
        switch kind {
        case .warmupStableDecay:
            guard let decay = decaySteps else {
                throw fail("decay_steps", "required when schedule.kind is warmup_stable_decay")
            }
            guard decay >= 1, warmupSteps + decay <= totalSteps else {
                throw fail(
                    "decay_steps",
                    "expected 1 to training.max_steps - schedule.warmup_steps "
                        + "(\(totalSteps) - \(warmupSteps) = \(totalSteps - warmupSteps)), found \(decay)")
            }
        case .constant, .cosine, .linear, .inverseSquareRoot:
            guard decaySteps == nil else {
                throw fail(
                    "decay_steps",
                    "applies only to schedule.kind warmup_stable_decay, but kind is \(kind.rawValue)")
            }
        }
    }

    // MARK: - Codable, with the configuration's key names

    enum CodingKeys: String, CodingKey {
        case kind
        case peak = "learning_rate"
        case minimum = "min_learning_rate"
        case warmupSteps = "warmup_steps"
        case totalSteps = "total_steps"
        case decaySteps = "decay_steps"
    }

    /// The keys a `schedule:` configuration section may hold (`total_steps` is not one: it comes from
    /// `training.max_steps`), for the config loader's unknown-key check.
    public static let configurationKeys: [String] = [
        CodingKeys.kind, .peak, .minimum, .warmupSteps, .decaySteps,
    ].map(\.rawValue)

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        kind = try c.decode(Kind.self, forKey: .kind)
        peak = try c.decode(Double.self, forKey: .peak)
        minimum = try c.decodeIfPresent(Double.self, forKey: .minimum) ?? 0
        warmupSteps = try c.decodeIfPresent(Int.self, forKey: .warmupSteps) ?? 0
        totalSteps = try c.decodeIfPresent(Int.self, forKey: .totalSteps) ?? 0
        decaySteps = try c.decodeIfPresent(Int.self, forKey: .decaySteps)
    }
}
