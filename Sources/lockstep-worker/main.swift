import Foundation
import LockstepDistributed
import LockstepKernels
import LockstepLogging
import LockstepTraining

// World ranks 1...N of a run: `mpirun -np 1 lockstep-coordinator --config run.yaml : -np N lockstep-worker`.
// Workers take everything from the coordinator; they have no options.
// OpenBLAS's kernels for this host's CPU where OpenBLAS did not know it (`lockstep train` sets them for the
// workers on its own host; a worker on another host starts itself again with them, before MPI starts).
if let setting = OpenBLASEnvironment.coreTypeSetting(), let failure = OpenBLASEnvironment.restart(setting: [setting]) {
    FileHandle.standardError.write(Data("lockstep-worker: could not restart with \(setting.name) set (\(failure))\n".utf8))
}
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
