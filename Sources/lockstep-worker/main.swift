import Foundation
import LockstepDistributed
import LockstepLogging
import LockstepTraining

// World ranks 1...N of a run: `mpirun -np 1 lockstep-coordinator --config run.yaml : -np N lockstep-worker`.
// Workers take everything from the coordinator; they have no options.
// mpirun killed with SIGKILL leaves its ranks running: leave with it.
ParentWatchdog.start(label: "lockstep-worker (pid \(getpid()))")
let logger = Loggers.logger("worker")
/// This rank's roles once MPI is up: a failure names the rank and the phase it failed in.
var roles: ProcessGroups? = nil
do {
    try MPIRuntime.initialize()
    let groups = try ProcessGroups.fromMPI()
    roles = groups
    // Ctrl-C reaches the whole process group, and mpirun passes SIGTERM and SIGUSR1 on to every rank; the
    // coordinator alone decides when to stop (after the step and a save), and then releases the workers.
    signal(SIGINT, SIG_IGN)
    signal(SIGTERM, SIG_IGN)
    signal(SIGUSR1, SIG_IGN)
    try DistributedRun.worker(groups: groups)
    try MPIRuntime.finalize()
} catch {
    let place = roles.map { " (world rank \($0.worldRank), \($0.world.phase))" } ?? ""
    logger.critical("lockstep-worker\(place): error: \(error)")
    MPIRuntime.abort(code: 1)
}
