// Checks a real MPI job end to end: every rank fills a buffer with (rank + 1) · (index + 1), sums it in
// place with MPI_Allreduce, and verifies the result against the closed form. Exits non-zero on mismatch.
// Usage: mpirun -np 3 mpi-allreduce-check [count]
import Foundation
import LockstepDistributed

do {
    let world = try MPICommunicator.world()
    let count = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 1000 : 1000
    var values = (0..<count).map { Float((world.rank + 1) * ($0 + 1)) }
    try values.withUnsafeMutableBufferPointer { try world.allreduceSum($0.baseAddress!, count: count) }
    let rankSum = Float(world.size * (world.size + 1) / 2)
    let wrong = (0..<count).filter { values[$0] != rankSum * Float($0 + 1) }
    if !wrong.isEmpty {
        FileHandle.standardError.write(
            "rank \(world.rank): \(wrong.count) of \(count) sums wrong, first at \(wrong[0]): \(values[wrong[0]])\n".data(using: .utf8)!)
        exit(1)
    }
    print("rank \(world.rank) of \(world.size): allreduce of \(count) floats ok")
    try MPIRuntime.finalize()
} catch {
    FileHandle.standardError.write("mpi-allreduce-check: \(error)\n".data(using: .utf8)!)
    exit(1)
}
