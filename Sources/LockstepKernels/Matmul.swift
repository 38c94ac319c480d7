import COpenBLAS
import RealModule

/// Fully connected layer: `out = input · W + bias`, through `cblas_sgemm`.
///
/// Shapes: `input (N, C)`, `out (N, OC)`, `bias (OC)`; N is rows (B·T), C input channels, OC output
/// channels. The weight layout is chosen per call because GPT-2 stores both kinds:
/// - `.inputMajor`: `W (C, OC)`, Hugging Face's Conv1D layout for every linear layer inside a block.
/// - `.outputMajor`: `W (OC, C)`, `nn.Linear`'s layout, used by the tied LM head (`wte (V, C)`) and the
///   classification head (`score (labels, C)`).
/// Keeping both means checkpoints load as straight copies, without transposes.
public enum Matmul {
    public enum WeightLayout: Sendable {
        /// `W (C, OC)`: Conv1D.
        case inputMajor
        /// `W (OC, C)`: nn.Linear.
        case outputMajor
    }

    /// `out (N, OC) = input (N, C) · W + bias`. Overwrites `out`.
    public static func forward(
        out: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        bias: UnsafePointer<Float>?, rows: Int, inChannels: Int, outChannels: Int, layout: WeightLayout
    ) {
        let n = Int32(rows), c = Int32(inChannels), oc = Int32(outChannels)
        if let bias {
            Parallel.forEachRange(rows, minimumChunk: max(1, (1 << 14) / max(1, outChannels))) { range in
                for r in range { (out + r &* outChannels).update(from: bias, count: outChannels) }
            }
        }
        let beta: Float = bias == nil ? 0 : 1
        switch layout {
        case .inputMajor:
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, oc, c, 1, input, c, weight, oc, beta, out, oc)
        case .outputMajor:
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, oc, c, 1, input, c, weight, c, beta, out, oc)
        }
    }

    /// Accumulates gradients: `dInput += dOut · Wᵀ`, `dWeight += inputᵀ · dOut` (in the weight's own
    /// layout), `dBias += Σ_rows dOut`. Pass nil for any gradient that is not needed.
    public static func backward(
        dInput: UnsafeMutablePointer<Float>?, dWeight: UnsafeMutablePointer<Float>?,
        dBias: UnsafeMutablePointer<Float>?, dOut: UnsafePointer<Float>, input: UnsafePointer<Float>,
        weight: UnsafePointer<Float>, rows: Int, inChannels: Int, outChannels: Int, layout: WeightLayout
    ) {
        let n = Int32(rows), c = Int32(inChannels), oc = Int32(outChannels)
        if let dInput {
            switch layout {
            case .inputMajor:  // (N, OC) · (C, OC)ᵀ
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, c, oc, 1, dOut, oc, weight, oc, 1, dInput, c)
            case .outputMajor:  // (N, OC) · (OC, C)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, c, oc, 1, dOut, oc, weight, c, 1, dInput, c)
            }
        }
        if let dWeight {
            switch layout {
            case .inputMajor:  // (N, C)ᵀ · (N, OC) -> (C, OC)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, c, oc, n, 1, input, c, dOut, oc, 1, dWeight, oc)
            case .outputMajor:  // (N, OC)ᵀ · (N, C) -> (OC, C)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, oc, c, n, 1, dOut, oc, input, c, 1, dWeight, c)
            }
        }
        if let dBias {
            // By column ranges over the cores, each column adding its rows in order.
            Parallel.forEachRange(outChannels, minimumChunk: max(8, (1 << 14) / max(1, rows))) { columns in
                for r in 0..<rows {
                    let row = dOut + r &* outChannels
                    for o in columns { dBias[o] += row[o] }
                }
            }
        }
    }

    /// Naive triple loop, the oracle for tests. Same shapes as `forward`; arrays are row-major.
    public static func forwardReference<T: Real>(
        input: [T], weight: [T], bias: [T]?, rows: Int, inChannels: Int, outChannels: Int, layout: WeightLayout
    ) -> [T] {
        var out = [T](repeating: 0, count: rows * outChannels)
        for r in 0..<rows {
            for o in 0..<outChannels {
                var sum: T = bias?[o] ?? 0
                for i in 0..<inChannels {
                    let w = layout == .inputMajor ? weight[i * outChannels + o] : weight[o * inChannels + i]
                    sum += input[r * inChannels + i] * w
                }
                out[r * outChannels + o] = sum
            }
        }
        return out
    }
}
