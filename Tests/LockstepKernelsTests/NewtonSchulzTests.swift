import LockstepTestSupport
import Testing

@testable import LockstepKernels

/// Newton–Schulz: the Float kernel against the generic reference in Double, in both Gram orientations and both
/// shapes, and the result's singular values in the band the quintic iteration leaves them in.
@Suite struct NewtonSchulzTests {
    /// The kernel on the row-major `(rows, columns)` matrix, forming `gram`'s Gram matrix.
    static func kernel(_ matrix: [Float], rows: Int, columns: Int, gram: NewtonSchulz.Gram) -> [Float] {
        var x = matrix
        var workspace = [Float](repeating: .nan, count: NewtonSchulz.workspaceCount(rows: rows, columns: columns, gram: gram))
        x.withUnsafeMutableBufferPointer { x in
            workspace.withUnsafeMutableBufferPointer { w in
                NewtonSchulz.orthogonalize(x.baseAddress!, rows: rows, columns: columns, gram: gram, workspace: w.baseAddress!)
            }
        }
        return x
    }

    /// Both Gram matrices give the polynomial's result (it commutes with transposition), each within 2e-5 of the
    /// Double reference (values are O(1/√min side); five steps of products over ≤ 48 terms round a few ulps each).
    @Test(arguments: [(12, 40), (40, 12), (24, 24), (1, 9)])
    func kernelMatchesReference(shape: (Int, Int)) {
        let (rows, columns) = shape
        var random = TestRandom(seed: 7 + UInt64(rows))
        let matrix = random.doubles(rows * columns)
        let expected = NewtonSchulz.reference(matrix, rows: rows, columns: columns)
        for gram in [NewtonSchulz.Gram.rows, .columns] {
            let actual = Self.kernel(matrix.floats, rows: rows, columns: columns, gram: gram)
            let error = zip(actual, expected).map { abs(Double($0) - $1) }.max() ?? 0
            #expect(error < 2e-5, "\(rows)×\(columns) \(gram): max error \(error)")
        }
    }

    /// The singular values of the result (square roots of the eigenvalues of X·Xᵀ over the shorter side) lie in
    /// [0.6, 1.25]: the iteration drives them into a band around 1, not to 1 exactly. Rectangular random
    /// matrices, whose smallest singular value is well above 0 (a square one's may sit near 0 and stay small).
    @Test(arguments: [(16, 48), (48, 16), (8, 64)])
    func singularValuesNearOne(shape: (Int, Int)) {
        let (rows, columns) = shape
        var random = TestRandom(seed: 99)
        let matrix = random.doubles(rows * columns).floats
        let x = Self.kernel(matrix, rows: rows, columns: columns, gram: .shorter(rows: rows, columns: columns)).doubles
        let k = min(rows, columns)
        // G = X·Xᵀ when rows ≤ columns, else Xᵀ·X: (k, k), eigenvalues σ².
        var gram = [Double](repeating: 0, count: k * k)
        for i in 0..<k {
            for j in 0..<k {
                var sum = 0.0
                if rows <= columns {
                    for l in 0..<columns { sum += x[i * columns + l] * x[j * columns + l] }
                } else {
                    for l in 0..<rows { sum += x[l * columns + i] * x[l * columns + j] }
                }
                gram[i * k + j] = sum
            }
        }
        let largest = Self.largestEigenvalue(gram, k)
        // The smallest: λmax(G) − λmax(λmax·I − G).
        var shifted = gram.map { -$0 }
        for i in 0..<k { shifted[i * k + i] += largest }
        let smallest = largest - Self.largestEigenvalue(shifted, k)
        #expect(largest.squareRoot() <= 1.25 && smallest.squareRoot() >= 0.6, "σ in [\(smallest.squareRoot()), \(largest.squareRoot())]")
    }

    /// Power iteration on a symmetric positive semi-definite `(k, k)` matrix.
    static func largestEigenvalue(_ matrix: [Double], _ k: Int) -> Double {
        var vector = (0..<k).map { 1 + Double($0) / Double(k) }
        var value = 0.0
        for _ in 0..<2000 {
            var next = [Double](repeating: 0, count: k)
            for i in 0..<k {
                for j in 0..<k { next[i] += matrix[i * k + j] * vector[j] }
            }
            let norm = next.reduce(0) { $0 + $1 * $1 }.squareRoot()
            if norm == 0 { return 0 }
            value = norm / vector.reduce(0) { $0 + $1 * $1 }.squareRoot()
            vector = next.map { $0 / norm }
        }
        return value
    }

    /// A zero matrix stays zero (the ε keeps the division finite).
    @Test func zeroStaysZero() {
        let x = Self.kernel([Float](repeating: 0, count: 12), rows: 3, columns: 4, gram: .rows)
        #expect(x.allSatisfy { $0 == 0 })
    }
}
