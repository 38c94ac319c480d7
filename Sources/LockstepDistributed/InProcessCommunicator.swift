import Foundation

/// A group of `size` ranks inside one process, one thread per rank: the distributed code paths (control plane,
/// gradient exchange, checkpoint handoff, hang diagnosis) run in unit tests without mpirun.
///
/// `communicators[r]` is rank `r`'s end; each must be used from one thread at a time (its rank's), as an MPI
/// rank is one process. The semantics follow MPI's:
/// - A collective is a rendezvous: every rank waits until all have arrived (a generation counter under one
///   `NSCondition`), then the last to arrive combines every rank's buffer while the others still wait, so no
///   buffer is touched after its owner returns. Reductions add in rank order, `((r0 + r1) + r2) + …`, and every
///   rank receives the same bits: results are deterministic and replicas stay identical. Each call carries a
///   signature (operation, count, root); ranks meeting with different ones all get
///   `DistributedError.mismatchedCollective`, which over MPI would be a hang or corrupted data.
/// - Point to point: messages are copied into FIFO mailboxes per (source, destination, tag), so `send` never
///   waits (MPI's eager sends; a correct program does not rely on more) and messages between two ranks with
///   one tag arrive in order (MPI's non-overtaking rule). A receive must name the message's exact size.
/// - Every wait has a deadline, the communicator's `hangTimeout`: past it the call throws
///   `DistributedError.timedOut` with the rank's world rank, its `phase`, and the world ranks it still waits
///   for (those not yet at the collective, or the silent source), as `MPICommunicator` does. A rank that
///   times out in a collective withdraws from it, so later arrivals never touch its buffer.
public final class InProcessGroup: @unchecked Sendable {
    /// The deadline of every wait when none is given: long enough for a slow test machine, short enough
    /// that a test that deadlocks fails rather than hangs.
    public static let defaultHangTimeout = 60.0

    /// The number of ranks.
    public var size: Int { exchange.size }
    /// Rank `r`'s communicator, for rank `r`'s thread.
    public let communicators: [InProcessCommunicator]
    /// `worldRanks[r]`: the rank that errors name for rank `r` here (a workers' group of a job names world
    /// ranks 1...N, as `MPICommunicator` does).
    public var worldRanks: [Int] { exchange.worldRanks }

    private let exchange: InProcessExchange

    /// - Parameters:
    ///   - size: the number of ranks, at least 1.
    ///   - worldRanks: the ranks errors name, one per rank; nil names `0 ..< size`.
    ///   - hangTimeout: every communicator's initial deadline in seconds (nil waits forever).
    /// - Precondition: `size >= 1` and `worldRanks` (when given) has `size` entries: a programming error,
    ///   not input.
    public init(size: Int, worldRanks: [Int]? = nil, hangTimeout: Double? = InProcessGroup.defaultHangTimeout) {
        precondition(size >= 1, "an in-process group needs at least one rank")
        precondition(worldRanks == nil || worldRanks?.count == size, "one world rank per rank")
        let exchange = InProcessExchange(size: size, worldRanks: worldRanks ?? Array(0..<size))
        self.exchange = exchange
        self.communicators = (0..<size).map { InProcessCommunicator(rank: $0, exchange: exchange, hangTimeout: hangTimeout) }
    }
}

/// What the ranks of an `InProcessGroup` share: the collective in progress and the mailboxes, under one lock.
/// Every communicator of the group holds it, so it lives as long as any of them.
final class InProcessExchange: @unchecked Sendable {
    let size: Int
    let worldRanks: [Int]
    let condition = NSCondition()

    // The collective in progress. Guarded by `condition`.
    var generation: UInt64 = 0
    var contributions: [Contribution?]
    var arrived = 0
    /// The outcome of the last completed generation, for the ranks that wait in it: nil, or the error all throw.
    /// No newer generation can complete before they read it: it needs them.
    var lastFailure: DistributedError?

    /// Undelivered messages, in the order sent. Guarded by `condition`.
    var mailboxes: [MailboxKey: [[UInt8]]] = [:]

    init(size: Int, worldRanks: [Int]) {
        self.size = size
        self.worldRanks = worldRanks
        self.contributions = [Contribution?](repeating: nil, count: size)
    }

    /// One rank's part in the collective in progress: what it called, and its buffers.
    struct Contribution {
        var signature: String
        /// The rank's in-place or send buffer.
        var buffer: UnsafeMutableRawPointer?
        /// A gather's receive buffer, on the root.
        var receive: UnsafeMutableRawPointer?
    }

    struct MailboxKey: Hashable {
        var source: Int
        var destination: Int
        var tag: Int
    }
}

/// One rank of an `InProcessGroup`; see there for the semantics.
public final class InProcessCommunicator: Communicator, @unchecked Sendable {
    public let rank: Int
    public var size: Int { group.size }
    public var hangTimeout: Double?
    public var phase = "start-up"

    /// Shared with the other ranks of the group.
    private let group: InProcessExchange

    fileprivate init(rank: Int, exchange: InProcessExchange, hangTimeout: Double?) {
        self.rank = rank
        self.group = exchange
        self.hangTimeout = hangTimeout
    }

    /// This rank's world rank, as errors name it.
    public var worldRank: Int { group.worldRanks[rank] }

    // MARK: - Collectives

    public func allreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {
        try reduceInRankOrder(buffer, count: count, name: "allreduceSum(Float)", root: nil, +)
    }

    public func allreduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws {
        try reduceInRankOrder(buffer, count: count, name: "allreduceSum(Double)", root: nil, +)
    }

    public func allreduce(_ buffer: UnsafeMutablePointer<UInt64>, count: Int, op: ReductionOp) throws {
        let combine: (UInt64, UInt64) -> UInt64
        switch op {
        case .sum: combine = (&+)  // wraps, as MPI's unsigned sum does
        case .min: combine = { Swift.min($0, $1) }
        case .max: combine = { Swift.max($0, $1) }
        }
        try reduceInRankOrder(buffer, count: count, name: "allreduce(UInt64, \(op))", root: nil, combine)
    }

    public func reduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int, root: Int) throws {
        try reduceInRankOrder(buffer, count: count, name: "reduceSum(Double)", root: root, +)
    }

    public func gather(_ send: UnsafeRawPointer, byteCount: Int, into receive: UnsafeMutableRawPointer?, root: Int) throws {
        try checkRank(root, "gather")
        try rendezvous(
            "gather(\(byteCount) bytes, root \(root))", buffer: UnsafeMutableRawPointer(mutating: send),
            receive: rank == root ? receive : nil
        ) { contributions in
            guard byteCount > 0 else { return }
            guard let target = contributions[root].receive else {
                throw DistributedError.missingRootValue(what: "gather of \(byteCount) bytes (no receive buffer)", root: root)
            }
            for (index, contribution) in contributions.enumerated() {
                guard let source = contribution.buffer else { continue }
                // memmove: the root may gather its own bytes from inside its receive buffer.
                (target + index * byteCount).copyMemory(from: source, byteCount: byteCount)
            }
        }
    }

    public func broadcast(_ buffer: UnsafeMutableRawPointer, byteCount: Int, root: Int) throws {
        try checkRank(root, "broadcast")
        try rendezvous("broadcast(\(byteCount) bytes, root \(root))", buffer: buffer, receive: nil) { contributions in
            guard byteCount > 0, let source = contributions[root].buffer else { return }
            for (index, contribution) in contributions.enumerated() where index != root {
                contribution.buffer?.copyMemory(from: source, byteCount: byteCount)
            }
        }
    }

    /// Each element of the sum is added in rank order, `((r0 + r1) + r2) + …`, as `allreduceSum`: the same bits.
    /// The parts of the buffer that are not the rank's own keep their values.
    public func reduceScatterSum(_ buffer: UnsafeMutablePointer<Float>, counts: [Int]) throws {
        let offsets = try partOffsets(counts, call: "reduceScatterSum")
        try rendezvous("reduceScatterSum(Float) of \(counts)", buffer: UnsafeMutableRawPointer(buffer), receive: nil) { contributions in
            let buffers = contributions.map { $0.buffer?.assumingMemoryBound(to: Float.self) }
            for (rank, target) in buffers.enumerated() where counts[rank] > 0 {
                guard let target else { continue }
                // Element i of the part is read from every rank before it is written on its owner alone.
                for index in offsets[rank] ..< offsets[rank] + counts[rank] {
                    var total = buffers[0]?[index] ?? 0
                    for other in buffers.dropFirst() { total += other?[index] ?? 0 }
                    target[index] = total
                }
            }
        }
    }

    public func allgather(_ buffer: UnsafeMutablePointer<Float>, counts: [Int]) throws {
        let offsets = try partOffsets(counts, call: "allgather")
        try rendezvous("allgather(Float) of \(counts)", buffer: UnsafeMutableRawPointer(buffer), receive: nil) { contributions in
            let buffers = contributions.map { $0.buffer?.assumingMemoryBound(to: Float.self) }
            for (source, part) in buffers.enumerated() where counts[source] > 0 {
                guard let part else { continue }
                for (target, other) in buffers.enumerated() where target != source {
                    other?.advanced(by: offsets[source]).update(from: part + offsets[source], count: counts[source])
                }
            }
        }
    }

    public func barrier() throws {
        try rendezvous("barrier", buffer: nil, receive: nil) { _ in }
    }

    /// A reduction of `count` elements: every rank's buffer combined in rank order into a scratch copy, then
    /// copied to every rank (`root` nil) or to `root` alone (the others keep theirs, as with MPI_Reduce).
    private func reduceInRankOrder<Element>(
        _ buffer: UnsafeMutablePointer<Element>, count: Int, name: String, root: Int?,
        _ combine: (Element, Element) -> Element
    ) throws {
        if let root { try checkRank(root, name) }
        let signature = "\(name) of \(count)" + (root.map { ", root \($0)" } ?? "")
        try rendezvous(signature, buffer: UnsafeMutableRawPointer(buffer), receive: nil) { contributions in
            guard count > 0 else { return }
            let buffers = contributions.map { $0.buffer?.assumingMemoryBound(to: Element.self) }
            guard let first = buffers[0] else { return }
            var total = Array(UnsafeBufferPointer(start: first, count: count))
            for other in buffers.dropFirst() {
                guard let other else { continue }
                for index in 0..<count { total[index] = combine(total[index], other[index]) }
            }
            total.withUnsafeBufferPointer { total in
                for (rank, target) in buffers.enumerated() where root == nil || root == rank {
                    if let target, let base = total.baseAddress { target.update(from: base, count: count) }
                }
            }
        }
    }

    // MARK: - Point to point

    public func send(_ buffer: UnsafeRawPointer, byteCount: Int, to destination: Int, tag: Int) throws {
        try checkRank(destination, "send")
        let message = Array(UnsafeRawBufferPointer(start: byteCount > 0 ? buffer : nil, count: byteCount))
        group.condition.lock()
        group.mailboxes[.init(source: rank, destination: destination, tag: tag), default: []].append(message)
        group.condition.broadcast()
        group.condition.unlock()
    }

    public func receive(_ buffer: UnsafeMutableRawPointer, byteCount: Int, from source: Int, tag: Int) throws {
        try receiveFromEach([buffer], byteCount: byteCount, from: [source], tag: tag)
    }

    /// Takes the messages in the order of `sources`, under one deadline; on a timeout names every source whose
    /// message has not arrived (and takes none of the rest).
    public func receiveFromEach(_ buffers: [UnsafeMutableRawPointer], byteCount: Int, from sources: [Int], tag: Int) throws {
        for source in sources { try checkRank(source, "receive") }
        let started = monotonicSeconds()
        group.condition.lock()
        defer { group.condition.unlock() }
        for (index, (buffer, source)) in zip(buffers, sources).enumerated() {
            let key = InProcessExchange.MailboxKey(source: source, destination: rank, tag: tag)
            while group.mailboxes[key]?.isEmpty ?? true {
                // Named: the sources not yet taken whose message has not arrived.
                try wait(on: group, since: started) {
                    sources[index...].filter { group.mailboxes[.init(source: $0, destination: rank, tag: tag)]?.isEmpty ?? true }
                }
            }
            guard let message = group.mailboxes[key]?.first, message.count == byteCount else {
                throw DistributedError.nothingToReceive(
                    tag: tag, byteCount: byteCount, pending: group.mailboxes[key]?.first?.count)
            }
            group.mailboxes[key]?.removeFirst()
            message.withUnsafeBytes { if let base = $0.baseAddress { buffer.copyMemory(from: base, byteCount: byteCount) } }
        }
    }

    /// The lowest source with a message for this rank with `tag` (MPI picks any; lowest is reproducible).
    public func probe(tag: Int) throws -> (source: Int, byteCount: Int)? {
        group.condition.lock()
        defer { group.condition.unlock() }
        for source in 0..<group.size {
            if let message = group.mailboxes[.init(source: source, destination: rank, tag: tag)]?.first {
                return (source, message.count)
            }
        }
        return nil
    }

    // MARK: - Rendezvous

    /// Joins the collective `signature` with this rank's buffers. The last rank to arrive checks that all
    /// signatures agree, runs `combine` over every rank's contribution (indexed by rank) and wakes the others;
    /// all return its outcome. Waits at most `hangTimeout`, then withdraws and throws `.timedOut`.
    private func rendezvous(
        _ signature: String, buffer: UnsafeMutableRawPointer?, receive: UnsafeMutableRawPointer?,
        combine: ([InProcessExchange.Contribution]) throws -> Void
    ) throws {
        let started = monotonicSeconds()
        group.condition.lock()
        defer { group.condition.unlock() }
        if let other = group.contributions[rank] {
            // Only possible when two threads share one rank's communicator.
            throw DistributedError.mismatchedCollective(rank: worldRank, call: signature, other: "\(other.signature) (same rank)")
        }
        group.contributions[rank] = .init(signature: signature, buffer: buffer, receive: receive)
        group.arrived += 1
        let generation = group.generation
        if group.arrived == group.size {
            let contributions = group.contributions.compactMap { $0 }
            var failure: DistributedError? = nil
            if let odd = contributions.first(where: { $0.signature != signature }) {
                failure = .mismatchedCollective(rank: worldRank, call: signature, other: odd.signature)
            } else {
                do {
                    try combine(contributions)
                } catch let error as DistributedError {
                    failure = error
                } catch {
                    failure = .undecodable(what: "in-process \(signature)", byteCount: 0, reason: "\(error)")
                }
            }
            group.lastFailure = failure
            group.contributions = [InProcessExchange.Contribution?](repeating: nil, count: group.size)
            group.arrived = 0
            group.generation &+= 1
            group.condition.broadcast()
            if let failure { throw failure }
            return
        }
        while group.generation == generation {
            do {
                try wait(on: group, since: started) { (0..<group.size).filter { group.contributions[$0] == nil } }
            } catch {
                group.contributions[rank] = nil
                group.arrived -= 1
                throw error
            }
        }
        if let failure = group.lastFailure { throw failure }
    }

    /// Waits on the group's condition once, until woken or the deadline; past the deadline throws `.timedOut`
    /// naming the world ranks of `missing()` (ranks of this group). Called with the condition locked.
    private func wait(on group: InProcessExchange, since started: Double, missing: () -> [Int]) throws {
        guard let limit = hangTimeout else {
            group.condition.wait()
            return
        }
        let waited = monotonicSeconds() - started
        if waited >= limit {
            throw DistributedError.timedOut(
                rank: worldRank, phase: phase, waitedSeconds: waited,
                waitingFor: missing().filter { $0 != rank }.map { group.worldRanks[$0] })
        }
        _ = group.condition.wait(until: Date(timeIntervalSinceNow: limit - waited))
    }

    private func checkRank(_ other: Int, _ call: String) throws {
        guard (0..<size).contains(other) else { throw DistributedError.noSuchRank(call: call, rank: other, size: size) }
    }
}
