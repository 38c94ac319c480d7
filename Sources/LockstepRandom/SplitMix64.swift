/// SplitMix64: a small, fast generator whose output is fixed by its seed on every platform and Swift version
/// (unlike the standard library's generators and `shuffle`, whose algorithms may change). Every random choice
/// in Lockstep (data order, initial weights, sampling, test data) comes from it, so a run is reproducible
/// from its seeds alone.
public struct SplitMix64: Sendable {
    /// Added to the state at each step (2⁶⁴ / φ).
    public static let increment: UInt64 = 0x9E37_79B9_7F4A_7C15
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    /// The next 64 random bits.
    public mutating func next() -> UInt64 {
        state &+= Self.increment
        return Self.mix(state)
    }

    /// Uniform in `0 ..< bound` (Lemire's multiply-high; the bias is below 2⁻³² for bounds under 2³²).
    public mutating func next(below bound: Int) -> Int {
        Int(truncatingIfNeeded: next().multipliedFullWidth(by: UInt64(bound)).high)
    }

    /// Uniform in [0, 1), from the top 53 bits.
    public mutating func unitInterval() -> Double {
        Double(next() >> 11) / Double(1 << 53)
    }

    /// Uniform in (0, 1], never 0, so that its logarithm is finite.
    public mutating func unitIntervalExcludingZero() -> Double {
        (Double(next() >> 11) + 1) / Double(1 << 53)
    }

    /// SplitMix64's finalizer: a bijective scramble of 64 bits in which every input bit reaches every output bit.
    public static func mix(_ value: UInt64) -> UInt64 {
        var z = value
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
