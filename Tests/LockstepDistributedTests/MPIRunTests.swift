import Foundation
import LockstepTestSupport
import Testing

@testable import LockstepDistributed

/// Runs real `mpirun` jobs over the executables SwiftPM built next to the test bundle.
@Suite struct MPIRunTests {
    @Test func allreduceAcrossThreeProcesses() throws {
        let result = try MPIRun.run(processes: 3, executable: "mpi-allreduce-check", arguments: ["4099"])
        #expect(result.status == 0, "mpirun failed:\n\(result.output)")
        for rank in 0..<3 {
            #expect(result.output.contains("rank \(rank) of 3: allreduce of 4099 floats ok"), "\(result.output)")
        }
    }

    @Test func localCommunicatorIsIdentity() throws {
        let local = LocalCommunicator()
        var values: [Float] = [1, 2, 3]
        try values.withUnsafeMutableBufferPointer { try local.allreduceSum($0.baseAddress!, count: 3) }
        #expect(values == [1, 2, 3])
        #expect(local.rank == 0 && local.size == 1)
    }

    @Test func singletonWorldIsOneProcess() throws {
        let world = try MPICommunicator.world()
        #expect(world.size == 1 && world.rank == 0)
        var values: [Double] = [1.5, -2]
        try values.withUnsafeMutableBufferPointer { try world.allreduceSum($0.baseAddress!, count: 2) }
        #expect(values == [1.5, -2])
    }
}

