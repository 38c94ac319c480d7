import ArgumentParser
import Foundation
import LockstepDistributed
import LockstepKernels
import LockstepTraining
import LockstepConfig
import LockstepLogging
import LockstepCheckpoints
import Logging

/// `lockstep train --config FILE`: pretraining from a YAML config. With one worker the coordinator and the
/// worker share this process.
struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train", abstract: "Train a GPT model from a YAML config.")

    @Option(help: "The run's YAML config (see configs/).")
    var config: String

    @Option(name: .customLong("set"), help: "Override a config value: --set training.max_steps=100 (repeatable).")
    var overrides: [String] = []

    @Option(help: "Data-parallel workers (overrides distributed.workers).")
    var workers: Int?

    @Option(help: "An Open MPI hostfile, to run the workers on several machines (the coordinator runs on the first).")
    var hostfile: String?

    @Option(help: "Resume: 'auto' (the newest valid checkpoint of the run, if any) or a checkpoint directory.")
    var resume: String?

    @Option(help: "Diagnostics on standard error: trace, debug, info, notice, warning, error or critical (default: $LOCKSTEP_LOG_LEVEL, else info). Every rank gets it.")
    var logLevel: String?

    @Option(
        name: .customLong("max-restarts"),
        help: "Relaunch a failed job from its newest valid checkpoint up to N times (overrides fault_tolerance.max_restarts).")
    var maxRestarts: Int?

    func run() throws {
        prepareOpenBLAS()
        try Loggers.bootstrap(level: logLevel)
        var overrides = overrides
        if let workers { overrides.append("distributed.workers=\(workers)") }
        if let maxRestarts { overrides.append("fault_tolerance.max_restarts=\(maxRestarts)") }
        let runConfig = try RunConfig.load(file: URL(fileURLWithPath: config), overrides: overrides)
        if runConfig.distributed.workers > 1 || hostfile != nil {
            // Checked here before any process starts: the tokenizer, the model's shape and, for workers on this
            // machine, whether they all fit in its memory.
            let tokenizer = try RunSetup.tokenizer(runConfig)
            let modelConfig = try RunSetup.modelConfig(runConfig, tokenizer: tokenizer, checkingMemory: hostfile != nil)
            if hostfile == nil,
                let estimate = try RunSetup.checkMemory(runConfig, modelConfig: modelConfig, processes: runConfig.distributed.workers)
            {
                warn("memory: \(estimate.describe(workers: runConfig.distributed.workers)) on this machine")
            }
            try supervise(runConfig, overrides: overrides, job: launchMPI)
            return
        }
        // One worker runs in this process; supervised, it runs in a child `lockstep train` that can fail alone.
        if runConfig.faultTolerance.maxRestarts > 0 {
            try supervise(runConfig, overrides: overrides, job: launchOneWorker)
            return
        }
        ComputeThreads.set(runConfig.distributed.threadsPerWorker)
        let tokenizer = try RunSetup.tokenizer(runConfig)
        let modelConfig = try RunSetup.modelConfig(runConfig, tokenizer: tokenizer)
        let replica = try RunSetup.replica(runConfig, modelConfig: modelConfig, group: LoneReplica())
        var resumed: CheckpointState? = nil
        if let resume,
            let checkpoint = try RunSetup.checkpointToResume(runConfig, resume: resume, rejected: { warn($0) })
        {
            let snapshot = WorkerState(count: replica.model.layout.count)
            resumed = try RunSetup.loadCheckpoint(
                checkpoint, config: runConfig, modelConfig: modelConfig,
                tokenizerVocabularySize: tokenizer.vocabularySize, into: snapshot)
            replica.restore(from: snapshot)
            warn("resuming from \(checkpoint.path) at step \(resumed?.step ?? 0)")
        }
        let stopFlag = StopFlag()
        stopFlag.installSignalHandlers()
        let coordinator = try Coordinator(
            config: runConfig, link: LocalReplicaLink(replica: replica), modelConfig: modelConfig,
            tokenizer: tokenizer, resumed: resumed, stopFlag: stopFlag,
            console: ProgressReporter(plainLineEvery: runConfig.output.logEvery))
        let summary = try coordinator.run()
        print(summary.line)
        print("model saved to \(summary.modelDirectory.path)")
    }
}

extension TrainCommand {
    /// OpenBLAS's own threads spin, yielding the core, for 2^28 cycles after each product before they sleep;
    /// meanwhile the kernels' threads (AdamW, GELU, softmax) want the same cores. `OPENBLAS_THREAD_TIMEOUT=4`
    /// (2^4 cycles) made 1 worker x 2 threads of GPT-2 124M 6-7% faster here (docs/BENCHMARKS.md). OpenBLAS reads
    /// it only as it loads, so when it is not set this process sets it and starts itself again, with
    /// `OPENBLAS_CORETYPE` where OpenBLAS did not know this CPU (`openBLASCoreSetting`); every process
    /// it launches inherits them (mpirun passes the timeout on with `-x`; a worker on another host chooses its
    /// kernels itself). Set them yourself to choose other values.
    func prepareOpenBLAS() {
        restartForOpenBLAS(setting: [(Self.openBLASTimeout, "4")] + openBLASCoreSetting())
    }

    static let openBLASTimeout = "OPENBLAS_THREAD_TIMEOUT"

    /// Runs the job under a `JobSupervisor`: relaunched after a failure up to `fault_tolerance.max_restarts`
    /// times, stopped cleanly (and not relaunched) on SIGINT, SIGTERM or SIGUSR1. Exits with the job's status.
    func supervise(
        _ runConfig: RunConfig, overrides: [String],
        job: (JobSupervisor.Attempt, [String], RunConfig, JobSupervisor) throws -> JobSupervisor.Ending
    ) throws {
        let supervisor = JobSupervisor(
            config: runConfig, maxRestarts: runConfig.faultTolerance.maxRestarts,
            hostfile: hostfile.map { URL(fileURLWithPath: $0) }, log: warn)
        supervisor.installSignalHandlers()
        let code = try supervisor.run(resume: resume) { attempt in
            try job(attempt, overrides, runConfig, supervisor)
        }
        if code != 0 { throw ExitCode(code) }
    }

    /// The directory of this executable, where `lockstep-coordinator` and `lockstep-worker` are too.
    var binDirectory: URL {
        executable.deletingLastPathComponent()
    }

    var executable: URL {
        URL(fileURLWithPath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
            ?? CommandLine.arguments[0])
    }

    /// Starts `arguments` under `setpriv --pdeathsig KILL` (util-linux), so that the kernel kills it when this
    /// process dies, even by SIGKILL; in its own process group, so that a Ctrl-C reaches only this process
    /// (which passes it on as SIGUSR1); its standard error through an `OutputRelay` that keeps the cause of a
    /// failure. Waits for it to end.
    func runChild(
        _ arguments: [String], supervisor: JobSupervisor, childlessGrace: Double?
    ) throws -> JobSupervisor.Ending {
        var arguments = arguments
        if let setpriv = ProcessLauncher.onPath("setpriv") {
            arguments = [setpriv, "--pdeathsig", "KILL"] + arguments
        } else {
            warn("setpriv (util-linux) not found: the job may outlive this process if it is killed")
        }
        let relay = try OutputRelay()
        let pid = try ProcessLauncher.spawn(arguments, ownProcessGroup: true, standardError: relay.writeEnd)
        relay.childStarted()
        supervisor.started(pid)
        let code = childlessGrace.map { ProcessLauncher.waitForJob(pid, childlessGrace: $0, stuck: { warn("lockstep train: \($0)") }) }
            ?? ProcessLauncher.wait(pid)
        relay.finish()
        return JobSupervisor.Ending(status: code, reason: relay.reason)
    }

    /// Runs `mpirun -np 1 lockstep-coordinator … : -np N lockstep-worker` and waits for it. mpirun forwards the
    /// SIGUSR1 of a clean stop to the coordinator, which finishes the step, saves and stops the workers.
    ///
    /// Nothing outlives this process: mpirun dies with it (`runChild`), and the ranks, which a killed mpirun
    /// leaves running, leave when their parent goes (`ParentWatchdog`).
    func launchMPI(
        _ attempt: JobSupervisor.Attempt, overrides: [String], runConfig: RunConfig, supervisor: JobSupervisor
    ) throws -> JobSupervisor.Ending {
        let threads = runConfig.distributed.threadsPerWorker
        var arguments = ["mpirun", "--oversubscribe", "--bind-to", "none", "--stdin", "none", "-x", "OPENBLAS_NUM_THREADS=\(threads)"]
        // The workers keep the config's deadline while they wait for the config itself.
        arguments += ["-x", "LOCKSTEP_HANG_TIMEOUT_SECONDS=\(runConfig.faultTolerance.hangTimeoutSeconds)"]
        if let logLevel { arguments += ["-x", "\(Loggers.levelVariable)=\(logLevel)"] }
        if getenv(Self.openBLASTimeout) != nil { arguments += ["-x", Self.openBLASTimeout] }
        if getuid() == 0 { arguments.append("--allow-run-as-root") }
        // The ring allreduce, blocking and non-blocking (the buckets): for gradient-sized buffers about twice the
        // bandwidth of Open MPI's default choices, whose non-blocking one sends each bucket whole both ways
        // (docs/BENCHMARKS.md). An algorithm chosen in the environment wins.
        let environment = ProcessInfo.processInfo.environment
        if environment["OMPI_MCA_coll_tuned_allreduce_algorithm"] == nil {
            arguments += ["--mca", "coll_tuned_use_dynamic_rules", "1", "--mca", "coll_tuned_allreduce_algorithm", "4"]
        }
        if environment["OMPI_MCA_coll_libnbc_iallreduce_algorithm"] == nil {
            arguments += ["--mca", "coll_libnbc_iallreduce_algorithm", "1"]
        }
        // The sharded buckets' reductions to each shard's owner: binomial rather than the default's pipeline of
        // small segments, which progresses only a segment per test (docs/BENCHMARKS.md, 2026-12-01).
        if environment["OMPI_MCA_coll_libnbc_ireduce_algorithm"] == nil {
            arguments += ["--mca", "coll_libnbc_ireduce_algorithm", "2"]
        }
        if let hostfile = attempt.hostfile { arguments += ["--hostfile", hostfile.path] }
        arguments += ["-np", "1", binDirectory.appendingPathComponent("lockstep-coordinator").path, "--config", config]
        for override in self.overrides { arguments += ["--set", override] }
        if let resume = attempt.resume { arguments += ["--resume", resume] }
        arguments += [":", "-np", "\(attempt.workers)", binDirectory.appendingPathComponent("lockstep-worker").path]
        warn("running: " + arguments.joined(separator: " "))
        return try runChild(arguments, supervisor: supervisor, childlessGrace: 30)
    }

    /// One worker, supervised: this command again, unsupervised, as a child that trains in its own process.
    func launchOneWorker(
        _ attempt: JobSupervisor.Attempt, overrides: [String], runConfig: RunConfig, supervisor: JobSupervisor
    ) throws -> JobSupervisor.Ending {
        var arguments = [executable.path, "train", "--config", config]
        for override in self.overrides { arguments += ["--set", override] }
        arguments += ["--workers", "1", "--max-restarts", "0"]
        if let logLevel { arguments += ["--log-level", logLevel] }
        if let resume = attempt.resume { arguments += ["--resume", resume] }
        if attempt.number > 0 { warn("running: " + arguments.joined(separator: " ")) }
        return try runChild(arguments, supervisor: supervisor, childlessGrace: nil)
    }
}

/// `OPENBLAS_CORETYPE` where OpenBLAS took this CPU for a Prescott (`OpenBLASEnvironment`), said on standard
/// error since it restarts the process; none otherwise.
func openBLASCoreSetting() -> [(name: String, value: String)] {
    guard let setting = OpenBLASEnvironment.coreTypeSetting() else { return [] }
    FileHandle.standardError.write(Data(
        "lockstep: OpenBLAS does not know this CPU and chose its Prescott (SSE3) kernels; restarting with \(setting.name)=\(setting.value)\n".utf8))
    return [setting]
}

/// Starts this command again with `settings` in the environment when one is missing (`OpenBLASEnvironment.restart`);
/// goes on as it is if that fails, saying why.
func restartForOpenBLAS(setting settings: [(name: String, value: String)]) {
    if let failure = OpenBLASEnvironment.restart(setting: settings) {
        warn("could not restart with \(settings.map(\.name).joined(separator: " and ")) set (\(failure)); OpenBLAS keeps its defaults")
    }
}

/// A note on standard error (through swift-log, `lockstep.cli`), for what is not a result.
func warn(_ message: String) {
    cliLog.notice("\(message)")
}

/// The command-line tool's diagnostics.
let cliLog = Loggers.logger("cli")
