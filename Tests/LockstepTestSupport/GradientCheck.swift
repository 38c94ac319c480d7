import Foundation

/// Deterministic random numbers for tests (SplitMix64), so a failing shape can be reproduced from its seed.
public struct TestRandom {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in `lower ..< upper`.
    public mutating func uniform(_ lower: Double = -1, _ upper: Double = 1) -> Double {
        lower + (upper - lower) * Double(next() >> 11) / Double(1 << 53)
    }

    public mutating func int(below bound: Int) -> Int { Int(next() % UInt64(bound)) }

    /// Values that are exactly representable as Float, so a Float kernel and a Double reference see the
    /// same inputs and differ only by their arithmetic.
    public mutating func doubles(_ count: Int, _ lower: Double = -1, _ upper: Double = 1) -> [Double] {
        (0..<count).map { _ in Double(Float(uniform(lower, upper))) }
    }
}

/// Central finite differences in Double: `(f(x + h·eᵢ) − f(x − h·eᵢ)) / 2h` for every i.
///
/// `f` is evaluated in Double (the kernels' generic reference implementations), so the only error is the
/// O(h²) truncation plus Double rounding, far below the Float backward being checked.
public func numericalGradient(at x: [Double], step h: Double = 1e-5, _ f: ([Double]) -> Double) -> [Double] {
    var x = x
    var gradient = [Double](repeating: 0, count: x.count)
    for i in x.indices {
        let saved = x[i]
        x[i] = saved + h
        let plus = f(x)
        x[i] = saved - h
        let minus = f(x)
        x[i] = saved
        gradient[i] = (plus - minus) / (2 * h)
    }
    return gradient
}

/// Largest `|actual − expected| / max(|expected|, floor)` over all elements: relative error, with `floor`
/// keeping values near zero from turning rounding noise into huge ratios.
public func maxRelativeError(_ actual: [Float], _ expected: [Double], floor: Double = 1e-2) -> Double {
    precondition(actual.count == expected.count, "sizes differ: \(actual.count) vs \(expected.count)")
    var worst = 0.0
    for (a, e) in zip(actual, expected) {
        worst = max(worst, abs(Double(a) - e) / max(abs(e), floor))
    }
    return worst
}

/// Dot product in Double: the scalar loss `Σ out·w` whose gradient with respect to `out` is `w`.
public func dot(_ a: [Double], _ b: [Double]) -> Double {
    zip(a, b).reduce(0) { $0 + $1.0 * $1.1 }
}

extension Array where Element == Double {
    public var floats: [Float] { map(Float.init) }
}

extension Array where Element == Float {
    public var doubles: [Double] { map(Double.init) }
}
