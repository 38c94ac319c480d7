import CMPI

/// An MPI call that returned something other than `MPI_SUCCESS`, with the call's name and MPI's own text.
public struct MPIError: Error, CustomStringConvertible {
    public let call: String
    public let code: Int32
    public let message: String

    public var description: String { "\(call) failed with MPI error \(code): \(message)" }
}

/// Every MPI return code goes through here.
@inline(__always)
func checkMPI(_ code: Int32, _ call: @autoclosure () -> String) throws {
    guard code != MPI_SUCCESS else { return }
    var buffer = [CChar](repeating: 0, count: Int(MPI_MAX_ERROR_STRING) + 1)
    var length: Int32 = 0
    MPI_Error_string(code, &buffer, &length)
    throw MPIError(call: call(), code: code, message: String(cString: buffer))
}
