import LockstepRandom
import RealModule

/// Inverted dropout: while training, each value is kept with probability `1 − rate` and scaled by
/// `1 / (1 − rate)`, else zeroed, so that its expectation is unchanged and evaluation needs nothing.
///
/// The mask is not stored. Value i's coin is a hash of `(draw.seed, i)` (SplitMix64's finalizer), so backward
/// recomputes the forward's mask from the same `Draw`, any thread can take any range, and a resumed run draws
/// the same masks from the same seeds. Shapes: `values (count)`, in the model `(B, T, C)` flattened.
public enum Dropout {
    /// One mask: the rate and the seed its coins come from.
    public struct Draw: Equatable, Sendable {
        /// The probability of zeroing a value, in [0, 1).
        public var rate: Float
        public var seed: UInt64

        public init(rate: Float, seed: UInt64) {
            self.rate = rate
            self.seed = seed
        }

        /// Another mask of the same rate for `part` (a layer's site, say): a seed no other part shares.
        public func part(_ part: Int) -> Draw {
            Draw(rate: rate, seed: SplitMix64.mix(seed ^ (UInt64(truncatingIfNeeded: part) &* SplitMix64.increment)))
        }

        /// Value i survives when the top 24 bits of its hash reach `rate · 2²⁴`.
        var threshold: UInt64 { UInt64((Double(rate) * Double(1 << 24)).rounded(.down)) }
        var scale: Float { 1 / (1 - rate) }

        func keeps(_ index: Int) -> Bool {
            SplitMix64.mix(seed &+ UInt64(truncatingIfNeeded: index) &* SplitMix64.increment) >> 40 >= threshold
        }
    }

    /// `values[i] = keeps(i) ? values[i] / (1 − rate) : 0`, in place.
    public static func forward(_ values: UnsafeMutablePointer<Float>, count: Int, draw: Draw) {
        apply(values, count: count, draw: draw)
    }

    /// The forward is linear in its input with the mask as diagonal: `dValues[i] = keeps(i) ? dValues[i] /
    /// (1 − rate) : 0`, in place, with the forward's `draw`.
    public static func backward(_ dValues: UnsafeMutablePointer<Float>, count: Int, draw: Draw) {
        apply(dValues, count: count, draw: draw)
    }

    private static func apply(_ values: UnsafeMutablePointer<Float>, count: Int, draw: Draw) {
        let scale = draw.scale
        Parallel.forEachRange(count, minimumChunk: 1 << 15) { range in
            for i in range { values[i] = draw.keeps(i) ? values[i] * scale : 0 }
        }
    }

    /// The definition, for tests: the same coins, in any precision.
    public static func forwardReference<T: Real & BinaryFloatingPoint>(_ values: [T], draw: Draw) -> [T] {
        values.indices.map { draw.keeps($0) ? values[$0] / (1 - T(Double(draw.rate))) : 0 }
    }
}
