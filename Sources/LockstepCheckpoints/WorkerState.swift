import LockstepData

/// A replica's whole training state at a step boundary: everything an exact resume needs besides the config.
/// The one value that every copy of that state goes through: the coordinator's snapshot, the checkpoint
/// handoff from worker 0, the resume broadcast, checkpoint save and load, and Hugging Face import.
///
/// The three buffers are `count` Floats each, in the model's parameter layout (`ParameterLayout`). A state
/// either owns its buffers (`init(count:)`: the coordinator's snapshot, a loaded checkpoint) or borrows a
/// replica's own (`init(borrowing:...)`: the replica's parameters and AdamW moments, with no copy).
public final class WorkerState {
    public let parameters: UnsafeMutableBufferPointer<Float>
    /// AdamW's first and second moments.
    public let firstMoments: UnsafeMutableBufferPointer<Float>
    public let secondMoments: UnsafeMutableBufferPointer<Float>
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
        ownsBuffers = true
    }

    /// A state over buffers someone else owns and keeps alive for this state's lifetime.
    public init(
        borrowing parameters: UnsafeMutableBufferPointer<Float>, firstMoments: UnsafeMutableBufferPointer<Float>,
        secondMoments: UnsafeMutableBufferPointer<Float>
    ) {
        self.parameters = parameters
        self.firstMoments = firstMoments
        self.secondMoments = secondMoments
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

    /// The three buffers in the order every transfer uses.
    public var buffers: [UnsafeMutableBufferPointer<Float>] { [parameters, firstMoments, secondMoments] }

    /// Copies `other` in, buffers and counters.
    public func copy(from other: WorkerState) {
        _ = parameters.update(fromContentsOf: other.parameters)
        _ = firstMoments.update(fromContentsOf: other.firstMoments)
        _ = secondMoments.update(fromContentsOf: other.secondMoments)
        optimizerStep = other.optimizerStep
        cursor = other.cursor
        lossWindow = other.lossWindow
    }
}
