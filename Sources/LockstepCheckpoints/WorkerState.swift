import LockstepData

/// A replica's whole training state at a step boundary: everything an exact resume needs besides the config.
/// The one value that every copy of that state goes through: the coordinator's snapshot, the checkpoint
/// handoff from worker 0, the resume broadcast, checkpoint save and load, and Hugging Face import.
///
/// The parameters are `count` Floats in the model's parameter layout (`ParameterLayout`); the moments cover
/// `momentRange` of it: all of it, except on a worker whose optimizer state is sharded (ZeRO-1), which holds
/// the moments of its own shard only. A state either owns its buffers (`init(count:)`: the coordinator's
/// snapshot, a loaded checkpoint; always whole) or borrows a replica's own (`init(borrowing:...)`: the
/// replica's parameters and AdamW moments, with no copy).
public final class WorkerState {
    public let parameters: UnsafeMutableBufferPointer<Float>
    /// AdamW's first and second moments of the parameters in `momentRange`, `momentRange.count` Floats each.
    public let firstMoments: UnsafeMutableBufferPointer<Float>
    public let secondMoments: UnsafeMutableBufferPointer<Float>
    /// The range of the parameter buffer whose moments this state holds (`0 ..< count` unless sharded).
    public let momentRange: Range<Int>
    /// Optimizer updates applied so far (AdamW's bias correction counts them).
    public var optimizerStep = 0
    /// Where the next global batch starts in the data stream.
    public var cursor = DataCursor(epoch: 0, position: 0)
    /// The loss-spike detector's recent global losses, oldest first (empty when detection is off); every replica
    /// holds the same ones, and a checkpoint keeps them so a resumed run makes the same skip decisions.
    public var lossWindow: [Double] = []
    private let ownsBuffers: Bool

    /// A zeroed state that owns its buffers.
    public init(count: Int) {
        parameters = .allocate(capacity: count)
        firstMoments = .allocate(capacity: count)
        secondMoments = .allocate(capacity: count)
        parameters.initialize(repeating: 0)
        firstMoments.initialize(repeating: 0)
        secondMoments.initialize(repeating: 0)
        momentRange = 0..<count
        ownsBuffers = true
    }

    /// A state over buffers someone else owns and keeps alive for this state's lifetime.
    /// - Parameter momentRange: the parameters the moment buffers cover (an optimizer's `shard`); nil: all.
    /// - Precondition: the moment buffers have `momentRange.count` Floats, inside the parameters' range (the
    ///   caller's own buffers, not input).
    public init(
        borrowing parameters: UnsafeMutableBufferPointer<Float>, firstMoments: UnsafeMutableBufferPointer<Float>,
        secondMoments: UnsafeMutableBufferPointer<Float>, momentRange: Range<Int>? = nil
    ) {
        let momentRange = momentRange ?? 0..<parameters.count
        precondition(
            momentRange.lowerBound >= 0 && momentRange.upperBound <= parameters.count
                && firstMoments.count == momentRange.count && secondMoments.count == momentRange.count,
            "moments of \(firstMoments.count) and \(secondMoments.count) for \(momentRange) of \(parameters.count) parameters")
        self.parameters = parameters
        self.firstMoments = firstMoments
        self.secondMoments = secondMoments
        self.momentRange = momentRange
        ownsBuffers = false
    }

    deinit {
        guard ownsBuffers else { return }
        parameters.deallocate()
        firstMoments.deallocate()
        secondMoments.deallocate()
    }

    /// The Floats of each buffer.
    public var count: Int { parameters.count }

    /// The two moment buffers, first then second, in the order every transfer uses (after the parameters).
    public var moments: [UnsafeMutableBufferPointer<Float>] { [firstMoments, secondMoments] }

    /// Copies `other` in, buffers and counters (of the moments, those of the parameters both states cover).
    public func copy(from other: WorkerState) {
        _ = parameters.update(fromContentsOf: other.parameters)
        copyMoments(from: other)
        optimizerStep = other.optimizerStep
        cursor = other.cursor
        lossWindow = other.lossWindow
    }

    /// Copies the moments of the parameters that both states cover (a sharded worker's from a whole state).
    public func copyMoments(from other: WorkerState) {
        let common = momentRange.clamped(to: other.momentRange)
        if common.isEmpty { return }
        for (mine, theirs) in zip(moments, other.moments) {
            (mine.baseAddress! + (common.lowerBound - momentRange.lowerBound))
                .update(from: theirs.baseAddress! + (common.lowerBound - other.momentRange.lowerBound), count: common.count)
        }
    }
}
