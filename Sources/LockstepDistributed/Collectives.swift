import Foundation

// Typed collectives built on the byte- and number-level ones of `Communicator`; they work alike over
// `MPICommunicator` and `LocalCommunicator`. Each is collective: every rank of the group calls it.
extension Communicator {
    /// Sends a value from `root` to every rank, as JSON bytes behind an 8-byte length.
    /// - Parameter value: the value on `root`; ignored (pass nil) elsewhere.
    /// - Returns: `root`'s value, on every rank.
    /// - Throws: `DistributedError.missingRootValue` if `root` passed nil, `.undecodable` if the bytes do not
    ///   decode as `T` (ranks disagreeing on the type), or `MPIError`.
    public func broadcast<T: Codable>(_ value: T?, root: Int) throws -> T {
        let what = "broadcast of \(T.self)"
        var bytes: [UInt8] = []
        var length: Int64 = 0
        if rank == root {
            guard let value else { throw DistributedError.missingRootValue(what: what, root: root) }
            bytes = Array(try JSONEncoder().encode(value))
            length = Int64(bytes.count)
        }
        try withUnsafeMutableBytes(of: &length) { try broadcast($0.baseAddress!, byteCount: 8, root: root) }
        if rank != root { bytes = [UInt8](repeating: 0, count: Int(length)) }
        try bytes.withUnsafeMutableBytes { raw in
            if let base = raw.baseAddress { try broadcast(base, byteCount: raw.count, root: root) }
        }
        if rank == root, let value { return value }
        do {
            return try JSONDecoder().decode(T.self, from: Data(bytes))
        } catch {
            throw DistributedError.undecodable(what: what, byteCount: bytes.count, reason: "\(error)")
        }
    }

    /// Copies `root`'s floats into `buffer` on every rank: identical initial replicas. Pieces past Int32.max bytes.
    public func broadcast(_ buffer: UnsafeMutableBufferPointer<Float>, root: Int) throws {
        guard let base = buffer.baseAddress else { return }
        try broadcast(UnsafeMutableRawPointer(base), byteCount: buffer.count * MemoryLayout<Float>.stride, root: root)
    }

    /// Collects one array of Doubles from every rank onto `root`. Every rank passes the same count.
    /// - Returns: on `root`, `size` arrays in rank order; nil elsewhere.
    public func gather(_ values: [Double], root: Int) throws -> [[Double]]? {
        let count = values.count
        var received = [Double](repeating: 0, count: rank == root ? count * size : 0)
        var empty: UInt8 = 0  // stands in for the buffers of empty arrays, which may have no address
        try withUnsafeMutableBytes(of: &empty) { empty in
            try values.withUnsafeBytes { send in
                try received.withUnsafeMutableBytes { receive in
                    try gather(
                        send.baseAddress ?? UnsafeRawPointer(empty.baseAddress!), byteCount: count * 8,
                        into: rank == root ? (receive.baseAddress ?? empty.baseAddress) : nil, root: root)
                }
            }
        }
        guard rank == root else { return nil }
        return (0..<size).map { Array(received[$0 * count ..< ($0 + 1) * count]) }
    }

    /// Sums arrays of Doubles elementwise onto `root`. Every rank passes the same count.
    /// - Returns: the sum on `root`; nil elsewhere.
    public func reduceSum(_ values: [Double], root: Int) throws -> [Double]? {
        var buffer = values
        try buffer.withUnsafeMutableBufferPointer { buffer in
            if let base = buffer.baseAddress { try reduceSum(base, count: buffer.count, root: root) }
        }
        return rank == root ? buffer : nil
    }

    /// Logical AND over the group (a minimum of 0/1): for decisions every rank must take alike, such as
    /// skipping an update whose loss or gradient norm is not finite on some worker.
    /// - Returns: true only if every rank passed true.
    public func allAgree(flag: Bool) throws -> Bool {
        var value: UInt64 = flag ? 1 : 0
        try allreduce(&value, count: 1, op: .min)
        return value == 1
    }

    /// Checks that every rank holds the same parameters, by their `parameterChecksum`.
    ///
    /// One allreduce of two UInt64s when they agree (the minimum of the checksum and of its complement);
    /// only when they differ, a second one that collects every rank's checksum to name the odd ones out.
    /// - Parameter step: named in the error.
    /// - Throws: `DistributedError.replicasDiverged`, on every rank alike, when the checksums differ.
    public func verifyReplicasAgree(checksum: UInt64, step: Int) throws {
        var extremes: [UInt64] = [checksum, ~checksum]
        try allreduce(&extremes, count: 2, op: .min)
        let smallest = extremes[0], largest = ~extremes[1]
        if smallest == largest { return }
        // Each rank fills its own slot; the sum of one non-zero slot per rank is every rank's checksum.
        var all = [UInt64](repeating: 0, count: size)
        all[rank] = checksum
        try allreduce(&all, count: size, op: .sum)
        var votes: [UInt64: Int] = [:]
        for value in all { votes[value, default: 0] += 1 }
        // The majority checksum; ties go to the one rank 0 holds.
        let majority = votes.max { a, b in a.value != b.value ? a.value < b.value : b.key == all[0] }!.key
        let odd = all.indices.filter { all[$0] != majority }
        throw DistributedError.replicasDiverged(step: step, checksums: all, disagreeingWorkers: odd)
    }
}
