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
}

extension WorkerState {
    /// Worker 0's side of the checkpoint handoff: the three buffers, then the optimizer step, cursor and
    /// loss-window length, then the loss window.
    func send(over communicator: any Communicator, to destination: Int) throws {
        for (offset, buffer) in buffers.enumerated() {
            try communicator.send(buffer, to: destination, tag: HandoffTag.state + offset)
        }
        var counters = counterFields
        try counters.withUnsafeMutableBytes {
            try communicator.send(UnsafeRawPointer($0.baseAddress!), byteCount: $0.count, to: destination, tag: HandoffTag.state + 3)
        }
        if !lossWindow.isEmpty {
            try lossWindow.withUnsafeBytes {
                try communicator.send($0.baseAddress!, byteCount: $0.count, to: destination, tag: HandoffTag.lossWindow)
            }
        }
    }

    /// The coordinator's side of the checkpoint handoff.
    func receive(over communicator: any Communicator, from source: Int) throws {
        for (offset, buffer) in buffers.enumerated() {
            try communicator.receive(buffer, from: source, tag: HandoffTag.state + offset)
        }
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

    /// The resume broadcast: the coordinator's loaded checkpoint to every replica's own state.
    func broadcast(over communicator: any Communicator, root: Int) throws {
        for buffer in buffers { try communicator.broadcast(buffer, root: root) }
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
