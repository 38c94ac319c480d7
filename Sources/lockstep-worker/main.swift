import Foundation
import LockstepDistributed
import LockstepLogging
import LockstepTraining

// World ranks 1...N of a run: `mpirun -np 1 lockstep-coordinator --config run.yaml : -np N lockstep-worker`.
// Workers take everything from the coordinator; they have no options.
// mpirun killed with SIGKILL leaves its ranks running: leave with it.
ParentWatchdog.start(label: "lockstep-worker (pid \(getpid()))")
let logger = Loggers.logger("worker")
do {
    try MPIRuntime.initialize()
    try DistributedRun.worker()
    try MPIRuntime.finalize()
} catch {
    logger.critical("lockstep-worker: error: \(error)")
    MPIRuntime.abort(code: 1)
}
