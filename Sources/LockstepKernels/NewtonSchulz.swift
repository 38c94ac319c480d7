import COpenBLAS
import RealModule

/// Muon's orthogonalisation: a few Newton–Schulz steps that push every singular value of a matrix towards 1
/// (into a band around it, roughly 0.7–1.2, for these coefficients) while keeping its singular vectors, so
/// `X ≈ U·Vᵀ` for `X = U·Σ·Vᵀ`. As `torch.optim.Muon`'s `_zeropower_via_newtonschulz`, in Float:
///
///     X ← X / max(‖X‖_F, ε)
///     repeat steps times:  A = X·Xᵀ;  B = b·A + c·A·A;  X ← a·X + B·X
///
/// The Gram matrix is taken over the shorter side (PyTorch transposes a matrix with more rows than columns
/// first and back after), which is the cheapest and, since the polynomial commutes with transposition,
/// the same result.
public enum NewtonSchulz {
    /// Keller Jordan's quintic coefficients `(a, b, c)`, as PyTorch's default.
    public static let coefficients: (a: Float, b: Float, c: Float) = (3.4445, -4.775, 2.0315)
    public static let defaultSteps = 5
    /// The smallest Frobenius norm divided by, so a zero matrix stays zero. PyTorch clamps the norm to it
    /// (`norm().clamp(min=eps)`) rather than adding it: on the small, nearly low-rank gradients of early
    /// attention matrices the two differ visibly after Newton–Schulz, and the clamp is what matches
    /// PyTorch's numbers (LlamaReferenceTests).
    public static let epsilon: Float = 1e-7

    /// Which Gram matrix the iteration forms for a row-major `(rows, columns)` matrix `S`: `.rows`, `S·Sᵀ`
    /// `(rows, rows)` (S is the X of the formulas); `.columns`, `Sᵀ·S` `(columns, columns)` (Sᵀ is X, and
    /// `X ← a·X + B·X` becomes `S ← a·S + S·Bᵀ`).
    public enum Gram: Sendable {
        case rows, columns

        /// The shorter side: rows when there are no more rows than columns.
        public static func shorter(rows: Int, columns: Int) -> Gram { rows <= columns ? .rows : .columns }
    }

    /// Floats of workspace `orthogonalize` needs for a `(rows, columns)` matrix: a copy of it and two
    /// `(k, k)` matrices, k the side `gram` names.
    public static func workspaceCount(rows: Int, columns: Int, gram: Gram) -> Int {
        let k = gram == .rows ? rows : columns
        return rows * columns + 2 * k * k
    }

    /// Orthogonalises the row-major `(rows, columns)` matrix at `matrix` in place.
    /// - Parameters:
    ///   - gram: which side's Gram matrix to form (`Gram.shorter` unless a caller must follow another
    ///     orientation's rounding, as Muon does for square matrices stored transposed).
    ///   - workspace: at least `workspaceCount(rows:columns:gram:)` Floats, overwritten.
    /// - Precondition: rows, columns ≥ 1 (callers pass a layout's shapes, never user input).
    public static func orthogonalize(
        _ matrix: UnsafeMutablePointer<Float>, rows: Int, columns: Int, gram: Gram, steps: Int = defaultSteps,
        workspace: UnsafeMutablePointer<Float>
    ) {
        precondition(rows >= 1 && columns >= 1, "NewtonSchulz: empty matrix \(rows)×\(columns)")
        let (a, b, c) = coefficients
        let count = rows * columns
        var sum = 0.0
        for i in 0..<count { sum += Double(matrix[i]) * Double(matrix[i]) }
        let norm = max(Float(sum.squareRoot()), epsilon)
        for i in 0..<count { matrix[i] /= norm }

        let k = gram == .rows ? rows : columns
        let r = Int32(rows), cc = Int32(columns), kk = Int32(k)
        // Two buffers for X, so each step's product reads one and writes the other (sgemm may not alias).
        var x = matrix, y = workspace
        let gramMatrix = workspace + count, update = gramMatrix + k * k
        for _ in 0..<steps {
            switch gram {
            case .rows:  // A = X·Xᵀ, X (rows, columns)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, r, r, cc, 1, x, cc, x, cc, 0, gramMatrix, kk)
            case .columns:  // A = Sᵀ·S
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, cc, cc, r, 1, x, cc, x, cc, 0, gramMatrix, kk)
            }
            // B = b·A + c·A·A
            update.update(from: gramMatrix, count: k * k)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, kk, kk, kk, c, gramMatrix, kk, gramMatrix, kk, b, update, kk)
            // Y = a·X + B·X (or a·S + S·Bᵀ)
            y.update(from: x, count: count)
            switch gram {
            case .rows:
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r, cc, r, 1, update, kk, x, cc, a, y, cc)
            case .columns:
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, r, cc, cc, 1, x, cc, update, kk, a, y, cc)
            }
            swap(&x, &y)
        }
        if x != matrix { matrix.update(from: x, count: count) }
    }

    /// The same iteration written out in loops on a logical `(rows, columns)` matrix, transposing a tall one
    /// first and back after as PyTorch does: the reference the kernel is tested against.
    public static func reference<T: Real & BinaryFloatingPoint>(_ matrix: [T], rows: Int, columns: Int, steps: Int = defaultSteps) -> [T] {
        let tall = rows > columns
        // X (m, n) with m ≤ n.
        let m = tall ? columns : rows, n = tall ? rows : columns
        var x = [T](repeating: 0, count: m * n)
        for i in 0..<rows {
            for j in 0..<columns { x[tall ? j * n + i : i * n + j] = matrix[i * columns + j] }
        }
        let norm = x.reduce(T.zero) { $0 + $1 * $1 }.squareRoot()
        x = x.map { $0 / max(norm, T(epsilon)) }
        let a = T(coefficients.a), b = T(coefficients.b), c = T(coefficients.c)
        func product(_ p: [T], _ q: [T], _ rowsP: Int, _ inner: Int, _ columnsQ: Int) -> [T] {
            var out = [T](repeating: 0, count: rowsP * columnsQ)
            for i in 0..<rowsP {
                for j in 0..<columnsQ {
                    var sum = T.zero
                    for l in 0..<inner { sum += p[i * inner + l] * q[l * columnsQ + j] }
                    out[i * columnsQ + j] = sum
                }
            }
            return out
        }
        for _ in 0..<steps {
            var xt = [T](repeating: 0, count: n * m)
            for i in 0..<m {
                for j in 0..<n { xt[j * m + i] = x[i * n + j] }
            }
            let gram = product(x, xt, m, n, m)
            let square = product(gram, gram, m, m, m)
            let update = zip(gram, square).map { b * $0 + c * $1 }
            x = zip(x, product(update, x, m, m, n)).map { a * $0 + $1 }
        }
        var out = [T](repeating: 0, count: rows * columns)
        for i in 0..<rows {
            for j in 0..<columns { out[i * columns + j] = x[tall ? j * n + i : i * n + j] }
        }
        return out
    }
}
