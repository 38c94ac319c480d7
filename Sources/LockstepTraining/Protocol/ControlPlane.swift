import Foundation
import LockstepData
import LockstepDistributed
import LockstepConfig
import LockstepCheckpoints

// The messages between the coordinator and the workers, over the world communicator (docs/ARCHITECTURE.md):
//   launch:   RunLaunch (+ WorkerState when resuming)          coordinator -> every worker
//   per step: Order (a StepPlan, or release)                   coordinator -> every worker
//             WorkerReport                                     every worker -> coordinator
//             evaluation logits (classifier dev sets)          every worker -> coordinator
//             WorkerState (when the plan asks for a handoff)   worker 0 -> coordinator
//               (sharded optimizer state: each worker sends its shard of the moments; the buffers travel
//               while the next step computes, before its update)

/// What the coordinator tells the workers before the first step.
struct RunLaunch: Codable {
    var config: RunConfig
    /// Set when resuming: the coordinator then broadcasts the checkpoint's `WorkerState` to every replica.
    var resumes: Bool
}

/// Message tags of the checkpoint handoff from worker 0 to the coordinator.
enum HandoffTag {
    /// The first of the state's tags (`WorkerState.send`).
    static let state = 11
    /// Each worker's share of a classifier's dev logits, before any checkpoint handoff.
    static let evaluationLogits = 15
    /// The loss-spike window of the handed-over state, after its counters (`WorkerState.send`).
    static let lossWindow = 16
    /// The first and second moments' shards sent to each worker in a sharded resume or roll-back
    /// (`WorkerState.broadcast(over:root:momentShards:)`).
    static let momentShard = 17
}

/// The workers' shards of the optimizer state when `distributed.shard_optimizer` is on: worker w (world rank
/// w + 1) holds the AdamW moments of `shards[w]` of a parameter buffer of `count` Floats. Nil when every
/// worker holds all of them. The coordinator and the workers compute the same ranges
/// (`ShardedGradientBuckets.shards`).
func momentShards(_ config: RunConfig, count: Int, workers: Int) -> [Range<Int>]? {
    config.distributed.shardOptimizer ? ShardedGradientBuckets.shards(count: count, workers: workers) : nil
}

extension WorkerState {
    /// A worker's side of the checkpoint handoff. Worker 0 (`withParameters`) sends the optimizer step, cursor
    /// and loss-window length, then the loss window, and starts sending the parameters and both moments; with
    /// sharded optimizer state every other worker starts sending its moments too (`withParameters` false),
    /// which are its shard's. The buffers must not change until `finish(transfers)`: the replica completes them
    /// before its next update (`MPIReplicaGroup.finishGradientSum`).
    func startSend(
        over communicator: any Communicator, to destination: Int, withParameters: Bool, adding transfers: inout PendingTransfers
    ) throws {
        if withParameters {
            var counters = counterFields
            try counters.withUnsafeMutableBytes {
                try communicator.send(UnsafeRawPointer($0.baseAddress!), byteCount: $0.count, to: destination, tag: HandoffTag.state + 3)
            }
            if !lossWindow.isEmpty {
                try lossWindow.withUnsafeBytes {
                    try communicator.send($0.baseAddress!, byteCount: $0.count, to: destination, tag: HandoffTag.lossWindow)
                }
            }
            try communicator.startSend(parameters, to: destination, tag: HandoffTag.state, adding: &transfers)
        }
        for (offset, buffer) in moments.enumerated() {
            try communicator.startSend(buffer, to: destination, tag: HandoffTag.state + 1 + offset, adding: &transfers)
        }
    }

    /// The coordinator's side of the checkpoint handoff, into this whole state, first part: the optimizer step,
    /// cursor and loss window from `source` (world rank 1, worker 0), which the checkpoint's `state.json` needs.
    func receiveCounters(over communicator: any Communicator, from source: Int) throws {
        var counters = counterFields
        try counters.withUnsafeMutableBytes {
            try communicator.receive($0.baseAddress!, byteCount: $0.count, from: source, tag: HandoffTag.state + 3)
        }
        setCounters(counters)
        if !lossWindow.isEmpty {
            try lossWindow.withUnsafeMutableBytes {
                try communicator.receive($0.baseAddress!, byteCount: $0.count, from: source, tag: HandoffTag.lossWindow)
            }
        }
    }

    /// The second part: the parameters and both moments, from `source` too, except that with `momentShards`
    /// (sharded optimizer state) shard w of the moments comes from world rank `source + w`. The coordinator
    /// takes them once the next plan has gone out: Open MPI copies a large message when its receive is posted
    /// (on one host straight from the sender's memory), so posting it earlier would hold the plan back.
    func receiveBuffers(over communicator: any Communicator, from source: Int, momentShards: [Range<Int>]?) throws {
        try communicator.receive(parameters, from: source, tag: HandoffTag.state)
        for (offset, buffer) in moments.enumerated() {
            for (worker, range) in (momentShards ?? [0..<count]).enumerated() {
                try communicator.receive(
                    UnsafeMutableBufferPointer(rebasing: buffer[range]), from: source + worker, tag: HandoffTag.state + 1 + offset)
            }
        }
    }

    /// The resume and roll-back broadcast: the coordinator's whole state to every replica's own. With
    /// `momentShards` (sharded optimizer state) the moments go point to point instead, each worker receiving
    /// only its shard: worker w (world rank `root + 1 + w`) `momentShards[w]` into its shard-sized buffers.
    func broadcast(over communicator: any Communicator, root: Int, momentShards: [Range<Int>]? = nil) throws {
        try communicator.broadcast(parameters, root: root)
        if let momentShards {
            for (offset, buffer) in moments.enumerated() {
                let tag = HandoffTag.momentShard + offset
                if communicator.rank == root {
                    for (worker, range) in momentShards.enumerated() {
                        try communicator.send(UnsafeMutableBufferPointer(rebasing: buffer[range]), to: root + 1 + worker, tag: tag)
                    }
                } else {
                    try communicator.receive(buffer, from: root, tag: tag)
                }
            }
        } else {
            for buffer in moments { try communicator.broadcast(buffer, root: root) }
        }
        var counters = counterFields
        try counters.withUnsafeMutableBytes {
            try communicator.broadcast($0.baseAddress!, byteCount: $0.count, root: root)
        }
        setCounters(counters)
        if !lossWindow.isEmpty {
            try lossWindow.withUnsafeMutableBytes {
                try communicator.broadcast($0.baseAddress!, byteCount: $0.count, root: root)
            }
        }
    }

    /// The optimizer step, the cursor and the loss window's length as they travel: four Int64s.
    private var counterFields: [Int64] {
        [Int64(optimizerStep), Int64(cursor.epoch), Int64(cursor.position), Int64(lossWindow.count)]
    }

    /// Sets the counters, and sizes `lossWindow` (zeros) for the window that follows them.
    private func setCounters(_ fields: [Int64]) {
        optimizerStep = Int(fields[0])
        cursor = DataCursor(epoch: Int(fields[1]), position: Int(fields[2]))
        let windowLength = max(0, Int(fields[3]))
        if lossWindow.count != windowLength { lossWindow = [Double](repeating: 0, count: windowLength) }
    }
}

extension Communicator {
    func send(_ buffer: UnsafeMutableBufferPointer<Float>, to destination: Int, tag: Int) throws {
        try send(UnsafeRawPointer(buffer.baseAddress!), byteCount: buffer.count * 4, to: destination, tag: tag)
    }

    func receive(_ buffer: UnsafeMutableBufferPointer<Float>, from source: Int, tag: Int) throws {
        try receive(UnsafeMutableRawPointer(buffer.baseAddress!), byteCount: buffer.count * 4, from: source, tag: tag)
    }

    func startSend(
        _ buffer: UnsafeMutableBufferPointer<Float>, to destination: Int, tag: Int, adding transfers: inout PendingTransfers
    ) throws {
        try startSend(
            UnsafeRawPointer(buffer.baseAddress!), byteCount: buffer.count * 4, to: destination, tag: tag, adding: &transfers)
    }
}

/// What the coordinator sends every worker before each step.
public enum Order: Codable, Equatable, Sendable {
    /// Run this step.
    case step(StepPlan)
    /// Leave without another step: a resumed run with nothing left to do, or an early stop.
    case release
}

extension ProcessGroups {
    /// The coordinator's order for the next step, to every worker; workers pass nil and get it back.
    public func broadcastOrder(_ order: Order?) throws -> Order {
        try sendToWorkers(order)
    }

    /// A step order (`broadcastOrder(.step(plan))`) for callers that never release.
    /// - Throws: `DistributedError.undecodable` if a release arrives instead.
    public func broadcastPlan(_ plan: StepPlan?) throws -> StepPlan {
        guard case .step(let received) = try broadcastOrder(plan.map(Order.step)) else {
            throw DistributedError.undecodable(what: "step plan", byteCount: 0, reason: "the coordinator sent a release")
        }
        return received
    }

    /// Every worker's report of the step, onto the coordinator, in worker-index order; nil on workers.
    public func gatherReports(_ report: WorkerReport?) throws -> [WorkerReport]? {
        guard let gathered = try collectFromWorkers(report?.fields, count: WorkerReport.fieldCount) else { return nil }
        return try gathered.enumerated().map { index, fields in
            guard let report = WorkerReport(fields: fields) else {
                throw DistributedError.malformedReport(
                    rank: isSingleProcess ? 0 : index + 1, fieldCount: fields.count, expected: WorkerReport.fieldCount)
            }
            return report
        }
    }
}
