import LockstepData
import LockstepModel

/// Mean next-token loss of a model over chosen windows of a token dataset, in batches of at most the
/// model's batch size. Used by replicas during training and by `lockstep evaluate`.
public enum ValidationLoss {
    /// `inputs`, `targets` are working memory of at least `batch × T` tokens each.
    public static func sums(
        model: GPT, dataset: TokenWindowDataset, windows: [Int], batch: Int, sequenceLength time: Int,
        inputs: UnsafeMutablePointer<Int32>, targets: UnsafeMutablePointer<Int32>
    ) -> EvaluationSums {
        var sums = EvaluationSums(lossSum: 0, windows: 0)
        var start = 0
        while start < windows.count {
            let rows = min(batch, windows.count - start)
            for row in 0..<rows {
                dataset.readWindow(windows[start + row], inputs: inputs + row * time, targets: targets + row * time)
            }
            let loss = model.forward(tokens: inputs, targets: targets, batch: rows)
            sums.lossSum += Double(loss) * Double(rows)
            sums.windows += Double(rows)
            start += rows
        }
        return sums
    }

    /// The whole of `dataset` (or its first `maxWindows` windows) with a freshly allocated working buffer.
    public static func evaluate(model: GPT, dataset: TokenWindowDataset, batch: Int, sequenceLength: Int, maxWindows: Int?)
        -> EvaluationSums
    {
        let count = min(maxWindows ?? dataset.windowCount, dataset.windowCount)
        let inputs = UnsafeMutablePointer<Int32>.allocate(capacity: batch * sequenceLength)
        let targets = UnsafeMutablePointer<Int32>.allocate(capacity: batch * sequenceLength)
        defer {
            inputs.deallocate()
            targets.deallocate()
        }
        return sums(
            model: model, dataset: dataset, windows: Array(0..<count), batch: batch, sequenceLength: sequenceLength,
            inputs: inputs, targets: targets)
    }
}
