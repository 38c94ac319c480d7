import Foundation
import LockstepDistributed
import LockstepTraining

// World ranks 1...N of a run: `mpirun -np 1 lockstep-coordinator --config run.yaml : -np N lockstep-worker`.
// Workers take everything from the coordinator; they have no options.
// mpirun killed with SIGKILL leaves its ranks running: leave with it.
ParentWatchdog.start(label: "lockstep-worker (pid \(getpid()))")
do {
    try MPIRuntime.initialize()
    try DistributedRun.worker()
    try MPIRuntime.finalize()
} catch {
    FileHandle.standardError.write(Data("lockstep-worker: error: \(error)\n".utf8))
    MPIRuntime.abort(code: 1)
}
