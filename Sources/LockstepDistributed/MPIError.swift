import CMPI
import Foundation

/// An MPI call that returned something other than `MPI_SUCCESS`, with the call's name and MPI's own text.
public struct MPIError: Error, CustomStringConvertible {
    public let call: String
    public let code: Int32
    public let message: String

    public var description: String { "\(call) failed with MPI error \(code): \(message)" }
}

/// Every MPI return code goes through here.
@inline(__always)
func checkMPI(_ code: Int32, _ call: @autoclosure () -> String) throws {
    guard code != MPI_SUCCESS else { return }
    var buffer = [CChar](repeating: 0, count: Int(MPI_MAX_ERROR_STRING) + 1)
    var length: Int32 = 0
    MPI_Error_string(code, &buffer, &length)
    let text = buffer.prefix(Int(length)).map { UInt8(bitPattern: $0) }
    throw MPIError(call: call(), code: code, message: String(decoding: text, as: UTF8.self))
}

/// What goes wrong above the MPI calls themselves: misuse of the API, or replicas that no longer agree.
public enum DistributedError: Error, Equatable, CustomStringConvertible {
    /// The workers' parameter checksums differ at `step`. `checksums[r]` is worker `r`'s checksum;
    /// `disagreeingWorkers` are those whose checksum differs from the one most workers hold.
    case replicasDiverged(step: Int, checksums: [UInt64], disagreeingWorkers: [Int])
    /// A gradient bucket range lies outside the buffer, is empty, or overlaps another.
    case invalidBucketRange(index: Int, range: Range<Int>, bufferCount: Int, reason: String)
    /// `bucketReady` was given an index out of range, or one already started this step.
    case invalidBucket(index: Int, bucketCount: Int, reason: String)
    /// `finish()` was called before every bucket was started; `missing` are the indices never started.
    case bucketsNotStarted(missing: [Int])
    /// A call that cannot be split into pieces got more elements than one MPI call carries.
    case countTooLarge(call: String, count: Int, limit: Int)
    /// A reduce-scatter or all-gather got `counts` that are not one count (≥ 0) per rank of a group of `size`.
    case invalidCounts(call: String, counts: [Int], size: Int)
    /// Sharded gradient buckets leave `uncovered` of the buffer outside every bucket: its shard sums would be stale.
    case bucketsDoNotCover(uncovered: Range<Int>, bufferCount: Int)
    /// A value broadcast or gathered on the control plane did not decode.
    case undecodable(what: String, byteCount: Int, reason: String)
    /// The root of a broadcast passed no value to send.
    case missingRootValue(what: String, root: Int)
    /// `LocalCommunicator.receive` found no message with `tag` (or `pending`, the size of one of another size).
    case nothingToReceive(tag: Int, byteCount: Int, pending: Int?)
    /// A report of the wrong length arrived in a gather.
    case malformedReport(rank: Int, fieldCount: Int, expected: Int)
    /// `call` named rank `rank`, which a group of `size` does not have (in-process groups check; MPI's own
    /// check comes back as an `MPIError`).
    case noSuchRank(call: String, rank: Int, size: Int)
    /// The ranks of an in-process group met in different collectives: world rank `rank` called `call` while
    /// another rank called `other` (over MPI a mismatch hangs or corrupts data; in one process it is caught).
    case mismatchedCollective(rank: Int, call: String, other: String)
    /// World rank `rank` waited `waitedSeconds` in `phase` (e.g. "gradient sync of step 412") without an
    /// answer from world ranks `waitingFor` (for a collective: every other rank of it, or the root).
    case timedOut(rank: Int, phase: String, waitedSeconds: Double, waitingFor: [Int])
    /// The coordinator's verdict on a hang: in `phase` it waited `waitedSeconds` and the world ranks `silent`
    /// never answered; `timeouts` are the workers that did answer, saying where they themselves timed out.
    case hang(phase: String, waitedSeconds: Double, silent: [Int], timeouts: [WorkerTimeout])

    public var description: String {
        switch self {
        case .replicasDiverged(let step, let checksums, let disagreeing):
            let listed = checksums.enumerated().map { "worker \($0.offset): \(hex($0.element))" }.joined(separator: ", ")
            return "replicas diverged at step \(step): worker(s) \(disagreeing.map(String.init).joined(separator: ", ")) "
                + "disagree with the majority's parameter checksum (\(listed))"
        case .invalidBucketRange(let index, let range, let bufferCount, let reason):
            return "gradient bucket \(index) (\(range.lowerBound)..<\(range.upperBound)) is invalid for a buffer of "
                + "\(bufferCount) floats: \(reason)"
        case .invalidBucket(let index, let bucketCount, let reason):
            return "bucketReady(\(index)) with \(bucketCount) buckets: \(reason)"
        case .bucketsNotStarted(let missing):
            return "GradientBuckets.finish() before bucketReady for bucket(s) \(missing.map(String.init).joined(separator: ", "))"
        case .countTooLarge(let call, let count, let limit):
            return "\(call): \(count) elements exceed the \(limit) one call can carry"
        case .invalidCounts(let call, let counts, let size):
            return "\(call): counts \(counts) are not one count ≥ 0 for each of the \(size) ranks"
        case .bucketsDoNotCover(let uncovered, let bufferCount):
            return "sharded gradient buckets leave \(uncovered.lowerBound)..<\(uncovered.upperBound) of a buffer of "
                + "\(bufferCount) floats outside every bucket"
        case .undecodable(let what, let byteCount, let reason):
            return "\(what): could not decode \(byteCount) bytes: \(reason)"
        case .missingRootValue(let what, let root):
            return "\(what): the root (rank \(root)) passed no value to broadcast"
        case .nothingToReceive(let tag, let byteCount, let pending):
            return "receive of \(byteCount) bytes with tag \(tag) in one process: "
                + (pending.map { "the message sent has \($0) bytes" } ?? "nothing was sent")
        case .malformedReport(let rank, let fieldCount, let expected):
            return "worker report from world rank \(rank) has \(fieldCount) fields, expected \(expected)"
        case .noSuchRank(let call, let rank, let size):
            return "\(call): no rank \(rank) in a group of \(size)"
        case .mismatchedCollective(let rank, let call, let other):
            return "collective mismatch: rank \(rank) called \(call) while another rank called \(other)"
        case .timedOut(let rank, let phase, let seconds, let waitingFor):
            return WorkerTimeout(rank: rank, phase: phase, waitedSeconds: seconds, waitingFor: waitingFor).description
        case .hang(let phase, let seconds, let silent, let timeouts):
            var parts: [String] = []
            if !silent.isEmpty {
                parts.append(
                    "\(silent.count == 1 ? "rank" : "ranks") \(listed(silent)) did not answer within "
                        + "\(seconds.formatted(digits: 0)) s (\(phase))")
            }
            parts += timeouts.map(\.description)
            if parts.isEmpty { parts.append("no answer within \(seconds.formatted(digits: 0)) s (\(phase))") }
            return "hang detected: " + parts.joined(separator: "; ")
        }
    }
}

/// A worker's own timeout, as it tells the coordinator.
public struct WorkerTimeout: Codable, Equatable, Sendable, CustomStringConvertible {
    public var rank: Int
    public var phase: String
    public var waitedSeconds: Double
    public var waitingFor: [Int]

    public init(rank: Int, phase: String, waitedSeconds: Double, waitingFor: [Int]) {
        self.rank = rank
        self.phase = phase
        self.waitedSeconds = waitedSeconds
        self.waitingFor = waitingFor
    }

    public var description: String {
        "rank \(rank) timed out after \(waitedSeconds.formatted(digits: 1)) s waiting in \(phase)"
            + (waitingFor.isEmpty ? "" : " for \(waitingFor.count == 1 ? "rank" : "ranks") \(listed(waitingFor))")
    }
}

extension DistributedError {
    /// The timeout of this process's own wait, if this is one.
    public var timeout: WorkerTimeout? {
        guard case .timedOut(let rank, let phase, let seconds, let waitingFor) = self else { return nil }
        return WorkerTimeout(rank: rank, phase: phase, waitedSeconds: seconds, waitingFor: waitingFor)
    }
}

extension Double {
    /// Fixed-point text with `digits` decimals, for messages.
    func formatted(digits: Int) -> String { String(format: "%.\(digits)f", self) }
}

private func listed(_ ranks: [Int]) -> String {
    ranks.map(String.init).joined(separator: ", ")
}


private func hex(_ value: UInt64) -> String {
    let digits = String(value, radix: 16)
    return "0x" + String(repeating: "0", count: 16 - digits.count) + digits
}
