/// `exp` and `tanh` on eight Floats at once, for the softmax and GELU loops. glibc's scalar `expf`/`tanhf`
/// cost 5 to 20 ns a value and do not vectorise; these are a few instructions a lane.
///
/// Accuracy (checked against Double in `VectorMathTests`): `exp` within 2 ulp over its whole range;
/// `tanh` within 2e-7 absolute (relative error grows for |x| < 1e-3, where tanh(x) ≈ x is below that).
enum VectorMath {
    typealias Vector = SIMD8<Float>

    /// e^x. Below −87.33 (where e^x is no longer a normal Float) the result is 0; above 88.37 it is
    /// e^88.37 ≈ 2.5e38 instead of overflowing. NaN stays NaN.
    ///
    /// Method: x = n·ln2 + r with n = round(x / ln2), |r| ≤ ln2/2 (ln2 split in two parts so r is exact to
    /// about 2⁻³²); e^r from its degree-7 Taylor polynomial (truncation error below 2e-9 relative);
    /// 2ⁿ built in the exponent bits.
    @inline(__always)
    static func exp(_ x: Vector) -> Vector {
        // Masked replaces rather than `clamped`/`pointwiseMin`, which are not inlined.
        var clamped = x
        clamped.replace(with: -87.33, where: x .< -87.33)
        clamped.replace(with: 88.37, where: x .> 88.37)
        // Adding 1.5·2²³ rounds to an integer (round to nearest even) and leaves it in the low mantissa bits.
        let magic: Float = 12_582_912
        let shifted = clamped * 1.442_695_04 + magic
        let n = shifted - magic
        let r = (clamped - n * 0.693_145_75) - n * 1.428_606_8e-6
        var p: Vector = r * (1 / 5040) + 1 / 720
        p = p * r + 1 / 120
        p = p * r + 1 / 24
        p = p * r + 1 / 6
        p = p * r + 0.5
        p = p * r + 1
        p = p * r + 1
        let integer = unsafeBitCast(shifted, to: SIMD8<Int32>.self) &- Int32(bitPattern: magic.bitPattern)
        let twoToN = unsafeBitCast((integer &+ 127) &<< 23, to: Vector.self)
        var result = p * twoToN
        result.replace(with: 0, where: x .< -87.33)
        result.replace(with: x, where: x .!= x)
        return result
    }

    /// tanh(x) = 1 − 2 / (e^{2x} + 1): exact limits ±1 for large |x|, no overflow.
    @inline(__always)
    static func tanh(_ x: Vector) -> Vector {
        1 - 2 / (exp(x + x) + 1)
    }

    /// Softmax of `count` values: `destination[i] = e^(source[i] − max) / Σ`, where `destination` may be
    /// `source` itself. Returns the max and Σ = Σᵢ e^(source[i] − max), from which a caller gets
    /// log-sum-exp = max + log Σ. Three passes over the row (max, exponentials, scaling), so a row should fit
    /// in cache: a vocabulary row of 50,304 Floats is 200 KB.
    static func softmax(
        _ source: UnsafePointer<Float>, into destination: UnsafeMutablePointer<Float>, count: Int
    ) -> (maximum: Float, sum: Float) {
        var maxima = Vector(repeating: -.infinity)
        var i = 0
        while i &+ 8 <= count {
            let v = load(source + i, count: 8)
            maxima.replace(with: v, where: v .> maxima)
            i &+= 8
        }
        var maximum = maxima.max()
        while i < count {
            maximum = Swift.max(maximum, source[i])
            i &+= 1
        }
        let shift = Vector(repeating: maximum)
        var sums = Vector()
        i = 0
        while i < count {
            let lanes = Swift.min(8, count &- i)
            var e = exp(load(source + i, count: lanes) - shift)
            if lanes < 8 { e.replace(with: 0, where: laneIndices .>= Int32(lanes)) }
            store(e, to: destination + i, count: lanes)
            sums += e
            i &+= 8
        }
        let sum = sums.sum()
        let inverse = Vector(repeating: 1 / sum)
        i = 0
        while i < count {
            let lanes = Swift.min(8, count &- i)
            store(load(destination + i, count: lanes) * inverse, to: destination + i, count: lanes)
            i &+= 8
        }
        return (maximum, sum)
    }

    /// Σᵢ a[i]·b[i] over `count` values.
    @inline(__always)
    static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int) -> Float {
        sum(count) { i, lanes in load(a + i, count: lanes) * load(b + i, count: lanes) }
    }

    /// Σ over `count` values given eight at a time by `lanes(i, n)` (the values at `i ..< i + n`; lanes past
    /// `n` are set to 0 here), in eight partial sums: a serial Float sum cannot be vectorised.
    @inline(__always)
    static func sum(_ count: Int, _ lanes: (Int, Int) -> Vector) -> Float {
        var sums = Vector()
        var i = 0
        while i < count {
            let n = Swift.min(8, count &- i)
            var v = lanes(i, n)
            if n < 8 { v.replace(with: 0, where: laneIndices .>= Int32(n)) }
            sums += v
            i &+= 8
        }
        return sums.sum()
    }

    static var laneIndices: SIMD8<Int32> { SIMD8(0, 1, 2, 3, 4, 5, 6, 7) }

    /// Loads up to 8 values from `source` (lanes past `count` are 0), so a loop's tail uses the same
    /// arithmetic as its body.
    @inline(__always)
    static func load(_ source: UnsafePointer<Float>, count: Int) -> Vector {
        if count >= 8 { return UnsafeRawPointer(source).loadUnaligned(as: Vector.self) }
        var v = Vector()
        for i in 0..<count { v[i] = source[i] }
        return v
    }

    /// Stores the first `count` (at most 8) lanes of `v` at `destination`.
    @inline(__always)
    static func store(_ v: Vector, to destination: UnsafeMutablePointer<Float>, count: Int) {
        if count >= 8 {
            UnsafeMutableRawPointer(destination).storeBytes(of: v, as: Vector.self)
            return
        }
        for i in 0..<count { destination[i] = v[i] }
    }
}
