import LockstepModel

/// What the coordinator asks of the replicas for one step.
public struct StepOrder: Codable, Equatable, Sendable {
    public var step: Int
    public var learningRate: Double
    /// Run the validation set after the update.
    public var evaluate: Bool
    /// Send the parameters to the coordinator after the update (for a save).
    public var sendParameters: Bool
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
    /// Runs one step on every replica. With `sendParameters`, `parameters` (the whole parameter buffer in
    /// the model's layout) holds replica 0's parameters after the update when this returns.
    func execute(_ order: StepOrder, parameters: UnsafeMutableBufferPointer<Float>) throws -> StepOutcome
}

/// Replicas in this process: `lockstep train` with one worker runs both roles in one process.
public final class LocalReplicaLink: ReplicaLink {
    let replica: WorkerReplica

    public init(replica: WorkerReplica) {
        self.replica = replica
    }

    public var replicaCount: Int { 1 }

    public func execute(_ order: StepOrder, parameters: UnsafeMutableBufferPointer<Float>) throws -> StepOutcome {
        let metrics = try replica.trainStep(learningRate: order.learningRate)
        let evaluation = order.evaluate ? replica.evaluate() : nil
        if order.sendParameters, parameters.baseAddress != replica.model.parameters.baseAddress {
            _ = parameters.update(fromContentsOf: replica.model.parameters)
        }
        return StepOutcome(metrics: metrics, evaluation: evaluation)
    }
}
