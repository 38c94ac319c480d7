import LockstepCheckpoints
import LockstepConfig
import LockstepDistributed
import LockstepEvaluation

/// The coordinator's evaluations: when one is due (`evaluation.every` and the last step, given a validation
/// set), and what it concluded: a language model's validation loss, or for a classifier the dev metrics, a
/// fitted temperature, whether this is the best checkpoint so far and whether patience has run out.
final class Validator {
    let every: Int
    let hasValidationSet: Bool
    /// Classifier runs with a dev set: metrics, temperature, best checkpoint and patience.
    let judge: DevSetJudge?

    /// What one evaluation concluded.
    struct Outcome {
        var validationLoss: Double?
        /// A new best dev metric: save this step and point `best` at it.
        var isBest = false
        /// Patience ran out (`classification.patience`).
        var stopEarly = false
    }

    init(config: RunConfig, labelNames: [String]?, resumed: CheckpointState?) throws {
        every = config.evaluation.every
        hasValidationSet = config.data.validation != nil
        if let labelNames, hasValidationSet {
            judge = try DevSetJudge(config: config, labelNames: labelNames, resumed: resumed)
        } else {
            judge = nil
        }
    }

    /// Whether the step ending at `step` (counting from 1) evaluates.
    func isDue(step: Int, isLast: Bool) -> Bool {
        hasValidationSet && (isLast || (every > 0 && step % every == 0))
    }

    /// Whether an evaluation may pick a new best checkpoint, so the coordinator needs the state at hand.
    var mayPickBest: Bool { judge != nil }

    /// The evaluation of the step that ended at `step`, logged to `log`; nil when the plan did not evaluate.
    func conclude(_ plan: StepPlan, _ summary: StepSummary, step: Int, log: TrainingLog) throws -> Outcome? {
        guard plan.evaluate else { return nil }
        if let judge {
            let verdict = try judge.judge(logits: summary.evaluationLogits, step: step)
            try log.recordEvaluation(verdict, temperature: judge.temperature, step: step)
            return Outcome(
                validationLoss: verdict.report.negativeLogLikelihood, isBest: verdict.improved,
                stopEarly: verdict.stop && !plan.stop)
        }
        guard let loss = summary.evaluationLoss else { return Outcome() }
        try log.recordValidation(loss: loss, tokens: summary.evaluationTokens, step: step)
        return Outcome(validationLoss: loss)
    }
}
