/// A 64-bit checksum of a parameter buffer's bytes, to check that replicas hold identical parameters.
///
/// FNV-1a over 64-bit words in four interleaved lanes (so the multiplies overlap; about memory speed), the
/// trailing bytes one by one, then the lanes and the length mixed by a SplitMix64-style finaliser. Every step of
/// one lane is a bijection of the lane's state, so a single changed word always changes the result; it is not a
/// cryptographic hash. Bitwise: `-0.0` and `0.0` differ, as they should for replicas meant to be bit-identical.
/// - Complexity: O(n), one pass.
public func parameterChecksum(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
    let prime: UInt64 = 0x0000_0100_0000_01b3
    let basis: UInt64 = 0xcbf2_9ce4_8422_2325
    var lane0 = basis, lane1 = basis ^ 1, lane2 = basis ^ 2, lane3 = basis ^ 3
    let count = bytes.count
    if let base = bytes.baseAddress {
        let blocks = count / 32
        var offset = 0
        for _ in 0..<blocks {
            lane0 = (lane0 ^ base.loadUnaligned(fromByteOffset: offset, as: UInt64.self)) &* prime
            lane1 = (lane1 ^ base.loadUnaligned(fromByteOffset: offset &+ 8, as: UInt64.self)) &* prime
            lane2 = (lane2 ^ base.loadUnaligned(fromByteOffset: offset &+ 16, as: UInt64.self)) &* prime
            lane3 = (lane3 ^ base.loadUnaligned(fromByteOffset: offset &+ 24, as: UInt64.self)) &* prime
            offset = offset &+ 32
        }
        while offset &+ 8 <= count {
            lane0 = (lane0 ^ base.loadUnaligned(fromByteOffset: offset, as: UInt64.self)) &* prime
            offset = offset &+ 8
        }
        while offset < count {
            lane1 = (lane1 ^ UInt64(base.load(fromByteOffset: offset, as: UInt8.self))) &* prime
            offset = offset &+ 1
        }
    }
    var hash = UInt64(truncatingIfNeeded: count)
    for lane in [lane0, lane1, lane2, lane3] {
        hash = mix(hash ^ lane)
    }
    return hash
}

/// The checksum of a buffer of parameters; see `parameterChecksum(_: UnsafeRawBufferPointer)`.
public func parameterChecksum(_ buffer: UnsafeBufferPointer<Float>) -> UInt64 {
    parameterChecksum(UnsafeRawBufferPointer(buffer))
}

/// The checksum of a buffer of parameters; see `parameterChecksum(_: UnsafeRawBufferPointer)`.
public func parameterChecksum(_ buffer: UnsafeMutableBufferPointer<Float>) -> UInt64 {
    parameterChecksum(UnsafeRawBufferPointer(buffer))
}

/// SplitMix64's finaliser: every input bit reaches every output bit.
@inline(__always)
private func mix(_ value: UInt64) -> UInt64 {
    var z = value &+ 0x9e37_79b9_7f4a_7c15
    z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
    z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
    return z ^ (z >> 31)
}
