import Foundation
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

/// Starting `mpirun` from tests: finds built executables and passes the flags this platform needs
/// (running as root, more ranks than cores, one OpenBLAS thread per rank).
enum MPIRun {
    struct Result {
        var status: Int32
        var output: String
    }

    /// The folder holding the test bundle and every executable product of this package.
    static var productsDirectory: URL {
        var url = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        while url.pathComponents.count > 1, !url.lastPathComponent.hasSuffix(".xctest") { url.deleteLastPathComponent() }
        return url.deletingLastPathComponent()
    }

    static func run(processes: Int, executable: String, arguments: [String] = [], timeout: TimeInterval = 120) throws -> Result {
        let binary = productsDirectory.appendingPathComponent(executable).path
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw CocoaError(.fileNoSuchFile, userInfo: [NSFilePathErrorKey: binary])
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["mpirun", "--oversubscribe", "--allow-run-as-root", "-x", "OPENBLAS_NUM_THREADS=1",
                             "-np", "\(processes)", binary] + arguments
        var environment = ProcessInfo.processInfo.environment
        environment["OMPI_MCA_rmaps_base_oversubscribe"] = "1"
        process.environment = environment
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let deadline = Date().addingTimeInterval(timeout)
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
        return Result(status: process.terminationStatus, output: String(decoding: data, as: UTF8.self))
    }
}
