import Foundation
import LockstepCheckpoints
import LockstepConfig
import LockstepDistributed
import LockstepModel

/// The coordinator's side of loss spikes (`fault_tolerance.spike_sigma`). The replicas decide which steps are
/// spikes, alike and before any update (`LossSpikeDetector`); this counts them, and after
/// `fault_tolerance.max_spikes_in_a_row` in a row rolls the run back: the parameters and optimizer state of the
/// newest valid checkpoint saved before the first spike of the row go to every replica with the next step's
/// plan, while the data cursor, the step count and the learning-rate schedule go on, so training continues on
/// the data past the spikes and still ends at `training.max_steps`. Its counts are kept in checkpoints.
final class SpikeGuard {
    let maxInARow: Int
    let directory: CheckpointDirectory
    private(set) var counts: SpikeCounts

    init(config: RunConfig, directory: CheckpointDirectory, resumed: CheckpointState?) {
        maxInARow = config.faultTolerance.maxSpikesInARow
        self.directory = directory
        counts = resumed?.spikes ?? SpikeCounts()
    }

    /// Whether the spikes counted so far call for a roll-back that has not happened: true only when resuming
    /// from a checkpoint saved at the step that completed the row.
    var isRollBackDue: Bool { maxInARow > 0 && counts.inARow >= maxInARow }

    /// Counts the step that ended at `step` (counting from 1); true when it completes a row of spikes that
    /// calls for a roll-back.
    func conclude(_ summary: StepSummary, step: Int) -> Bool {
        guard summary.skippedSpike else {
            counts.inARow = 0
            counts.firstOfRow = nil
            return false
        }
        if counts.inARow == 0 { counts.firstOfRow = step }
        counts.inARow += 1
        counts.skipped += 1
        return isRollBackDue
    }

    /// Loads the newest valid checkpoint saved before the current row of spikes into `snapshot` (the caller
    /// has waited for any save in flight), and starts a new row. Returns the checkpoint.
    /// - Throws: `TrainingStopped` when there is no such checkpoint, naming the steps and the settings.
    func prepareRollBack(into snapshot: WorkerState, model: GPTConfig, step: Int) throws -> CheckpointState {
        let firstSpike = counts.firstOfRow ?? step
        var reasons: [String] = []
        for candidate in directory.checkpoints() where candidate.step < firstSpike {
            do {
                let state = try TrainingCheckpoint.load(candidate.url, expectedModel: model, into: snapshot)
                counts.inARow = 0
                counts.firstOfRow = nil
                counts.rollBacks += 1
                return state
            } catch {
                reasons.append("\(candidate.url.path): \(error)")
            }
        }
        throw TrainingStopped(
            description: """
                \(counts.inARow) loss spikes in a row (steps \(firstSpike) to \(step); fault_tolerance.max_spikes_in_a_row = \
                \(maxInARow)) and no valid checkpoint before step \(firstSpike) in \(directory.root.path) to roll back to\
                \(reasons.isEmpty ? "" : " (" + reasons.joined(separator: "; ") + ")"); set checkpoint.every, or \
                fault_tolerance.max_spikes_in_a_row: 0 to only skip spikes.
                """)
    }
}
