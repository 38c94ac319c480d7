import Foundation
import LockstepKernels

/// Starting `mpirun` from tests: finds built executables and passes the flags this platform needs
/// (running as root, more ranks than cores, one OpenBLAS thread per rank).
public enum MPIRun {
    public struct Result {
        public var status: Int32
        public var output: String
    }

    /// The folder holding the test bundle and every executable product of this package.
    public static var productsDirectory: URL {
        var url = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        while url.pathComponents.count > 1, !url.lastPathComponent.hasSuffix(".xctest") { url.deleteLastPathComponent() }
        return url.deletingLastPathComponent()
    }

    public static func run(processes: Int, executable: String, arguments: [String] = [], timeout: TimeInterval = 120) throws -> Result {
        let binary = productsDirectory.appendingPathComponent(executable).path
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw CocoaError(.fileNoSuchFile, userInfo: [NSFilePathErrorKey: binary])
        }
        return try command(
            ["mpirun", "--oversubscribe", "--allow-run-as-root", "-x", "OPENBLAS_NUM_THREADS=1", "-np", "\(processes)", binary]
                + arguments, timeout: timeout)
    }

    /// An environment for starting mpirun, or any command, from a test process.
    ///
    /// A test process that called MPI itself is a singleton MPI job, and Open MPI put its PMIx server and
    /// "singleton" settings into this environment; an mpirun that inherits them fails without a word.
    ///
    /// The commands run the OpenBLAS kernels this process runs (`OPENBLAS_CORETYPE`), so that what a test
    /// computes here and what they compute agree bit for bit: on a CPU OpenBLAS does not know they would
    /// otherwise choose faster ones than this process has (`OpenBLASEnvironment`).
    public static var environment: [String: String] {
        var environment = ProcessInfo.processInfo.environment.filter { key, _ in !isJobVariable(key) }
        environment["OMPI_MCA_rmaps_base_oversubscribe"] = "1"
        environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
        environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        if environment[OpenBLASEnvironment.coreTypeVariable] == nil {
            environment[OpenBLASEnvironment.coreTypeVariable] = OpenBLASEnvironment.detectedCore
        }
        return environment
    }

    /// Starts `arguments` (the first looked up on PATH) in `directory`, output to `log`.
    public static func start(_ arguments: [String], directory: URL? = nil, log: URL? = nil) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        process.environment = environment
        if let directory { process.currentDirectoryURL = directory }
        if let log {
            FileManager.default.createFile(atPath: log.path, contents: nil)
            let handle = try FileHandle(forWritingTo: log)
            process.standardOutput = handle
            process.standardError = handle
        }
        try process.run()
        return process
    }

    /// Runs `arguments` (the first looked up on PATH) to the end or the timeout, with its output.
    public static func command(_ arguments: [String], directory: URL? = nil, timeout: TimeInterval = 120) throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        process.environment = environment
        if let directory { process.currentDirectoryURL = directory }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        // Read on another thread, so a job that hangs still meets the deadline here.
        let output = Output()
        let reading = DispatchGroup()
        DispatchQueue.global().async(group: reading) { output.data = pipe.fileHandleForReading.readDataToEndOfFile() }
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        let timedOut = process.isRunning
        if timedOut { stop(process) }
        process.waitUntilExit()
        reading.wait()
        var text = String(decoding: output.data, as: UTF8.self)
        if timedOut { text += "\n[MPIRun: timed out after \(timeout) s]" }
        return Result(status: timedOut ? -1 : process.terminationStatus, output: text)
    }

    /// Ends `process`: SIGTERM (mpirun passes it on to its ranks), then SIGKILL if it is still there after
    /// `grace` seconds (an mpirun stuck in its own teardown ignores SIGTERM).
    public static func stop(_ process: Process, grace: TimeInterval = 5) {
        process.terminate()
        let deadline = Date().addingTimeInterval(grace)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }

    /// Variables through which Open MPI and PMIx describe the job of the current process, not settings.
    public static func isJobVariable(_ key: String) -> Bool {
        key.hasPrefix("PMIX_") || key.hasPrefix("OMPI_COMM_WORLD_") || key.hasPrefix("OMPI_MCA_orte_")
            || ["OMPI_MCA_ess", "OMPI_MCA_pmix", "OMPI_APP_CTX_NUM_PROCS"].contains(key)
    }

    private final class Output: @unchecked Sendable {
        var data = Data()
    }
}
