import LockstepModel

/// What the coordinator asks of the replicas for one step.
public struct StepOrder: Codable, Equatable, Sendable {
    public var step: Int
    public var learningRate: Double
    /// Run the validation set after the update.
    public var evaluate: Bool
    /// Send parameters, optimizer moments and data cursor to the coordinator after the update (for a save).
    public var sendState: Bool
    /// The last order of the run: replicas exit after answering it.
    public var stop: Bool
}

/// What the replicas answer, summed over replicas.
public struct StepOutcome: Sendable {
    public var metrics: ReplicaStepMetrics
    public var evaluation: EvaluationSums?
}

/// The coordinator's view of the replicas, however they are connected: in this process, or over MPI.
public protocol ReplicaLink: AnyObject {
    var replicaCount: Int { get }
    /// Runs one step on every replica. With `sendState`, `snapshot` holds replica 0's state after the update
    /// when this returns.
    func execute(_ order: StepOrder, snapshot: TrainingSnapshot) throws -> StepOutcome
}

/// Replicas in this process: `lockstep train` with one worker runs both roles in one process.
public final class LocalReplicaLink: ReplicaLink {
    let replica: WorkerReplica

    public init(replica: WorkerReplica) {
        self.replica = replica
    }

    public var replicaCount: Int { 1 }

    public func execute(_ order: StepOrder, snapshot: TrainingSnapshot) throws -> StepOutcome {
        let metrics = try replica.trainStep(learningRate: order.learningRate)
        let evaluation = order.evaluate ? replica.evaluate() : nil
        if order.sendState { snapshot.capture(from: replica) }
        return StepOutcome(metrics: metrics, evaluation: evaluation)
    }
}
