import LockstepTestSupport
import Testing

@testable import LockstepKernels

/// Matmul against its naive reference and finite differences, for both weight layouts and awkward sizes.
/// Tolerances: forward 1e-5 relative, absolute below 1 (Float sgemm vs Double loops, C ≤ 37 terms);
/// backward 1e-3 relative against Double finite differences (Float accumulation in the backward).
@Suite struct MatmulTests {
    static let shapes: [(rows: Int, c: Int, oc: Int)] = [(1, 1, 1), (1, 7, 3), (5, 13, 9), (12, 37, 17), (3, 8, 24)]

    @Test(arguments: [Matmul.WeightLayout.inputMajor, .outputMajor], [true, false])
    func forwardMatchesReference(layout: Matmul.WeightLayout, withBias: Bool) {
        var random = TestRandom(seed: 1)
        for shape in Self.shapes {
            let input = random.doubles(shape.rows * shape.c), weight = random.doubles(shape.c * shape.oc)
            let bias = withBias ? random.doubles(shape.oc) : nil
            let expected = Matmul.forwardReference(
                input: input, weight: weight, bias: bias, rows: shape.rows, inChannels: shape.c,
                outChannels: shape.oc, layout: layout)
            var out = [Float](repeating: .nan, count: shape.rows * shape.oc)
            let inputF = input.floats, weightF = weight.floats, biasF = bias?.floats
            out.withUnsafeMutableBufferPointer { out in
                biasF.withOptionalPointer { bias in
                    Matmul.forward(
                        out: out.baseAddress!, input: inputF, weight: weightF, bias: bias, rows: shape.rows,
                        inChannels: shape.c, outChannels: shape.oc, layout: layout)
                }
            }
            #expect(maxRelativeError(out, expected, floor: 1) < 1e-5, "shape \(shape)")
        }
    }

    @Test(arguments: [Matmul.WeightLayout.inputMajor, .outputMajor])
    func backwardMatchesFiniteDifferences(layout: Matmul.WeightLayout) {
        var random = TestRandom(seed: 2)
        for shape in Self.shapes {
            let (n, c, oc) = shape
            let input = random.doubles(n * c), weight = random.doubles(c * oc), bias = random.doubles(oc)
            let dOut = random.doubles(n * oc)
            func loss(_ input: [Double], _ weight: [Double], _ bias: [Double]) -> Double {
                dot(Matmul.forwardReference(
                    input: input, weight: weight, bias: bias, rows: n, inChannels: c, outChannels: oc,
                    layout: layout), dOut)
            }
            let expectedInput = numericalGradient(at: input) { loss($0, weight, bias) }
            let expectedWeight = numericalGradient(at: weight) { loss(input, $0, bias) }
            let expectedBias = numericalGradient(at: bias) { loss(input, weight, $0) }

            // Gradients start non-zero to check that backward accumulates rather than overwrites.
            var dInput = [Float](repeating: 0.5, count: n * c), dWeight = [Float](repeating: 0.5, count: c * oc)
            var dBias = [Float](repeating: 0.5, count: oc)
            Matmul.backward(
                dInput: &dInput, dWeight: &dWeight, dBias: &dBias, dOut: dOut.floats, input: input.floats,
                weight: weight.floats, rows: n, inChannels: c, outChannels: oc, layout: layout)
            #expect(maxRelativeError(dInput, expectedInput.map { $0 + 0.5 }) < 1e-3, "dInput \(shape)")
            #expect(maxRelativeError(dWeight, expectedWeight.map { $0 + 0.5 }) < 1e-3, "dWeight \(shape)")
            #expect(maxRelativeError(dBias, expectedBias.map { $0 + 0.5 }) < 1e-3, "dBias \(shape)")
        }
    }
}

extension Optional where Wrapped == [Float] {
    /// Calls `body` with a pointer to the array's storage, or nil.
    func withOptionalPointer<R>(_ body: (UnsafePointer<Float>?) -> R) -> R {
        switch self {
        case .some(let array): return array.withUnsafeBufferPointer { body($0.baseAddress) }
        case .none: return body(nil)
        }
    }
}
