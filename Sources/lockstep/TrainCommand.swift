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

    func run() throws {
        try Loggers.bootstrap(level: logLevel)
        var overrides = overrides
        if let workers { overrides.append("distributed.workers=\(workers)") }
        let runConfig = try RunConfig.load(file: URL(fileURLWithPath: config), overrides: overrides)
        if runConfig.distributed.workers > 1 || hostfile != nil {
            // Checked here before any process starts: the tokenizer, the model's shape and, for workers on this
            // machine, whether they all fit in its memory.
            let tokenizer = try RunSetup.tokenizer(runConfig)
            let modelConfig = try RunSetup.modelConfig(runConfig, tokenizer: tokenizer, checkingMemory: hostfile != nil)
            if hostfile == nil {
                try RunSetup.checkMemory(runConfig, modelConfig: modelConfig, processes: runConfig.distributed.workers)
            }
            try launchMPI(
                workers: runConfig.distributed.workers, threads: runConfig.distributed.threadsPerWorker,
                hangTimeout: runConfig.faultTolerance.hangTimeoutSeconds)
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
    /// Runs `mpirun -np 1 lockstep-coordinator … : -np N lockstep-worker` on this machine and waits for it.
    /// mpirun gets its own process group so that a Ctrl-C reaches only this process, which passes it on as
    /// SIGUSR1: mpirun forwards that to the coordinator, which finishes the step, saves and stops the workers.
    ///
    /// Nothing outlives this process: mpirun starts under `setpriv --pdeathsig KILL` (util-linux), so the kernel
    /// kills it when this process dies, even by SIGKILL; the ranks, which a killed mpirun leaves running, leave
    /// when their parent goes (`ParentWatchdog`).
    func launchMPI(workers: Int, threads: Int, hangTimeout: Double) throws {
        let binDirectory = URL(fileURLWithPath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
            ?? CommandLine.arguments[0]).deletingLastPathComponent()
        var arguments = ["mpirun", "--oversubscribe", "--bind-to", "none", "--stdin", "none", "-x", "OPENBLAS_NUM_THREADS=\(threads)"]
        // The workers keep the config's deadline while they wait for the config itself.
        arguments += ["-x", "LOCKSTEP_HANG_TIMEOUT_SECONDS=\(hangTimeout)"]
        if let logLevel { arguments += ["-x", "\(Loggers.levelVariable)=\(logLevel)"] }
        if getuid() == 0 { arguments.append("--allow-run-as-root") }
        // The ring allreduce: for gradient-sized buffers about twice the bandwidth of Open MPI's default choice
        // (docs/BENCHMARKS.md). An algorithm chosen in the environment wins.
        if ProcessInfo.processInfo.environment["OMPI_MCA_coll_tuned_allreduce_algorithm"] == nil {
            arguments += ["--mca", "coll_tuned_use_dynamic_rules", "1", "--mca", "coll_tuned_allreduce_algorithm", "4"]
        }
        if let hostfile { arguments += ["--hostfile", hostfile] }
        arguments += ["-np", "1", binDirectory.appendingPathComponent("lockstep-coordinator").path, "--config", config]
        for override in overrides { arguments += ["--set", override] }
        if let resume { arguments += ["--resume", resume] }
        arguments += [":", "-np", "\(workers)", binDirectory.appendingPathComponent("lockstep-worker").path]
        warn("running: " + arguments.joined(separator: " "))
        if let setpriv = ProcessLauncher.onPath("setpriv") {
            arguments = [setpriv, "--pdeathsig", "KILL"] + arguments
        } else {
            warn("setpriv (util-linux) not found: mpirun and the ranks may outlive this process if it is killed")
        }

        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        let pid = try ProcessLauncher.spawn(arguments, ownProcessGroup: true)
        var sources: [DispatchSourceSignal] = []
        for signalNumber in [SIGINT, SIGTERM] {
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
            source.setEventHandler {
                warn("stopping after the current step (passing SIGUSR1 to mpirun)")
                kill(pid, SIGUSR1)
            }
            source.resume()
            sources.append(source)
        }
        let code = ProcessLauncher.wait(pid)
        sources.forEach { $0.cancel() }
        if code != 0 { throw ExitCode(code) }
    }
}

/// A note on standard error (through swift-log, `lockstep.cli`), for what is not a result.
func warn(_ message: String) {
    cliLog.notice("\(message)")
}

/// The command-line tool's diagnostics.
let cliLog = Loggers.logger("cli")
