import ArgumentParser
import Foundation
import LockstepDistributed
import LockstepLogging
import LockstepTraining

/// World rank 0 of a run: `mpirun -np 1 lockstep-coordinator --config run.yaml : -np N lockstep-worker`.
@main
struct CoordinatorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lockstep-coordinator",
        abstract: "The coordinator of a data-parallel run (schedule, evaluation, checkpoints, logging).")

    @Option(help: "The run's YAML config.")
    var config: String

    @Option(name: .customLong("set"), help: "Override a config value: --set training.max_steps=100 (repeatable).")
    var overrides: [String] = []

    @Option(help: "Resume: 'auto' (the newest valid checkpoint, if any) or a checkpoint directory.")
    var resume: String?

    @Option(help: "Diagnostics on standard error: trace, debug, info, notice, warning, error or critical (default: $LOCKSTEP_LOG_LEVEL, else info).")
    var logLevel: String?

    func run() throws {
        try Loggers.bootstrap(level: logLevel)
        let logger = Loggers.logger("coordinator")
        let log: (String) -> Void = { logger.info("\($0)") }
        // mpirun killed with SIGKILL leaves its ranks running: leave with it.
        ParentWatchdog.start(label: "lockstep-coordinator (pid \(getpid()))")
        do {
            try MPIRuntime.initialize()
            let groups = try ProcessGroups.fromMPI()
            // SIGINT, SIGTERM and SIGUSR1 (which mpirun forwards) stop the run after the step, with a save.
            let stopFlag = StopFlag()
            stopFlag.installSignalHandlers()
            let summary = try DistributedRun.coordinator(
                groups: groups, configPath: config, overrides: overrides, resume: resume, stopFlag: stopFlag, log: log)
            print(summary.line)
            print("model saved to \(summary.modelDirectory.path)")
            try MPIRuntime.finalize()
        } catch {
            // The workers wait on the coordinator: take the whole job down rather than leave them hanging.
            logger.critical("lockstep-coordinator: error: \(error)")
            MPIRuntime.abort(code: 1)
        }
    }
}
