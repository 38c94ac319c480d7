import Foundation

/// Decides whether a step's global loss is a spike: more than `sigma` standard deviations above the mean of the
/// last `capacity` losses that were neither spikes nor non-finite. It acts only once it holds `capacity` of
/// them. Every replica feeds it the same global losses in the same order, so every replica decides alike, and
/// its window travels with the replica's state (`WorkerState.lossWindow`) into checkpoints, so a resumed run
/// decides as the uninterrupted one would. The sums run in window order, so the decision is a pure function of
/// the window and the loss.
struct LossSpikeDetector {
    let sigma: Double
    let capacity: Int
    /// Oldest first.
    private(set) var window: [Double] = []

    init(sigma: Double, capacity: Int, window: [Double] = []) {
        self.sigma = sigma
        self.capacity = capacity
        self.window = Array(window.suffix(capacity))
    }

    /// Mean and population standard deviation of the window.
    var statistics: (mean: Double, deviation: Double) {
        let mean = window.reduce(0, +) / Double(window.count)
        let variance = window.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(window.count)
        return (mean, variance.squareRoot())
    }

    /// Whether `loss` is a spike; a loss that is not one joins the window (the oldest leaves a full window).
    mutating func observe(_ loss: Double) -> Bool {
        guard loss.isFinite else { return false }
        if window.count >= capacity {
            let (mean, deviation) = statistics
            if loss - mean > sigma * deviation { return true }
            window.removeFirst(window.count - capacity + 1)
        }
        window.append(loss)
        return false
    }

    /// Restarts with the window `losses` (a restored state), or empty (after a roll-back: the detector learns
    /// the restored model's loss level again before it acts).
    mutating func reset(to losses: [Double] = []) {
        window = Array(losses.suffix(capacity))
    }
}
