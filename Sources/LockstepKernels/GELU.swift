import RealModule

/// GELU with the tanh approximation (GPT-2's `gelu_new`), elementwise over `count` values.
public enum GELU {
    public static func forward(out: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, count: Int) {
        fatalError("GELU.forward: not implemented yet")
    }

    /// Accumulates `dInput += gelu'(input) * dOut`.
    public static func backward(
        dInput: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, dOut: UnsafePointer<Float>, count: Int
    ) {
        fatalError("GELU.backward: not implemented yet")
    }

    public static func forwardReference<T: Real>(input: [T]) -> [T] {
        fatalError("GELU.forwardReference: not implemented yet")
    }
}
