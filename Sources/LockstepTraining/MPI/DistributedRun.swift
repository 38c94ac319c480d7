import Foundation
import LockstepData
import LockstepDistributed
import LockstepKernels
import LockstepModel
import LockstepConfig
import LockstepLogging
import LockstepCheckpoints

/// The two executables' bodies: `mpirun -np 1 lockstep-coordinator --config run.yaml : -np N lockstep-worker`.
///
/// They take their `ProcessGroups` (`ProcessGroups.fromMPI()` in the executables, `ProcessGroups.inProcess`
/// in tests, one thread per rank) and touch no process-wide state of their own: signal dispositions and
/// `MPIRuntime.abort` belong to the executables' `main`. (`ComputeThreads.set` from the config is process-wide;
/// in-process ranks all set the same value.)
public enum DistributedRun {
    /// Rank 0. Reads the config, tells the workers, then runs the coordinator loop over `groups.world`.
    /// - Parameters:
    ///   - groups: world rank 0's roles in a job of at least one worker.
    ///   - stopFlag: set by the executable's signal handlers (SIGINT, SIGTERM, SIGUSR1) to stop after the step.
    ///   - console: the progress line; nil writes plain lines to standard error every `output.log_every` steps.
    public static func coordinator(
        groups: ProcessGroups, configPath: String, overrides: [String], resume: String?,
        stopFlag: StopFlag = StopFlag(), console: ProgressReporter? = nil, log: @escaping (String) -> Void
    ) throws -> RunSummary {
        guard groups.isCoordinator, !groups.isSingleProcess else {
            throw TrainingStopped(
                description: "lockstep-coordinator must be world rank 0 beside at least one lockstep-worker: "
                    + "mpirun -np 1 lockstep-coordinator --config FILE : -np N lockstep-worker")
        }
        var overrides = overrides
        overrides.append("distributed.workers=\(groups.workerCount)")
        let config = try RunConfig.load(file: URL(fileURLWithPath: configPath), overrides: overrides)
        groups.setHangTimeout(config.faultTolerance.hangTimeoutSeconds)
        let tokenizer = try RunSetup.tokenizer(config)
        let modelConfig = try RunSetup.modelConfig(config, tokenizer: tokenizer)
        let link = MPIReplicaLink(groups: groups)
        var launch = RunLaunch(config: config, resumes: false)
        var resumed: CheckpointState? = nil
        let snapshot = WorkerState(count: ParameterLayout(config: modelConfig).count)
        link.momentShards = momentShards(config, count: snapshot.count, workers: groups.workerCount)
        if let shards = link.momentShards {
            log("optimizer state sharded over \(shards.count) workers (ZeRO-1): AdamW moments of up to "
                + "\(shards.map(\.count).max() ?? 0) of \(snapshot.count) parameters per worker")
        }
        if let resume, let checkpoint = try RunSetup.checkpointToResume(config, resume: resume, rejected: log) {
            let state = try RunSetup.loadCheckpoint(
                checkpoint, config: config, modelConfig: modelConfig, tokenizerVocabularySize: tokenizer.vocabularySize,
                into: snapshot)
            resumed = state
            launch.resumes = true
            log("resuming from \(checkpoint.path) at step \(state.step) with \(groups.workerCount) workers")
        }
        try link.diagnosingHangs {
            groups.setPhase("launch broadcast")
            _ = try groups.world.broadcast(launch, root: ProcessGroups.coordinatorRank)
            if resumed != nil {
                groups.setPhase("resume broadcast")
                try snapshot.broadcast(over: groups.world, root: ProcessGroups.coordinatorRank, momentShards: link.momentShards)
            }
        }
        let coordinator = try Coordinator(
            config: config, link: link, modelConfig: modelConfig, tokenizer: tokenizer,
            resumed: resumed, stopFlag: stopFlag, console: console ?? ProgressReporter(plainLineEvery: config.output.logEvery))
        link.classifierDevSet = coordinator.classifierDevSet
        let summary = try coordinator.run()
        let cpu = processCPUSeconds()
        log(String(format: "coordinator CPU time: %.2f s over %.1f s of training (%.1f%% of one core)", cpu,
            summary.seconds, 100 * cpu / max(summary.seconds, 1e-9)))
        log(String(format: "coordinator CPU time while stepping: %.2f s over %.1f s (%.1f%% of one core)",
            summary.steppingCPUSeconds, summary.steppingSeconds,
            100 * summary.steppingCPUSeconds / max(summary.steppingSeconds, 1e-9)))
        return summary
    }

    /// Ranks 1...N. Waits for the launch message, builds its replica, then follows the coordinator's plans.
    /// - Parameter groups: a worker's roles (world rank 1...N with its end of the workers' group).
    /// - Throws: when a wait on the other workers times out, after telling the coordinator and giving it the
    ///   deadline plus 5 s to end the job with a better message.
    public static func worker(groups: ProcessGroups) throws {
        do {
            try workerLoop(groups)
        } catch let error as DistributedError {
            guard let timeout = error.timeout else { throw error }
            // Waiting on the coordinator: it is the one not answering, and this rank ends the job. Waiting on
            // the other workers: tell the coordinator, which names the silent rank and ends the job; end it
            // here only if the coordinator does not within the deadline.
            if !timeout.waitingFor.contains(ProcessGroups.coordinatorRank) {
                groups.reportTimeout(timeout)
                log.error("lockstep-worker: \(timeout); told rank 0")
                Thread.sleep(forTimeInterval: (groups.hangTimeout ?? 0) + 5)
            }
            throw error
        }
    }

    private static func workerLoop(_ groups: ProcessGroups) throws {
        guard let workers = groups.workers, let workerIndex = groups.workerIndex else {
            throw TrainingStopped(description: "lockstep-worker must not be world rank 0 (that is the coordinator)")
        }
        groups.setPhase("launch broadcast")
        let launch: RunLaunch = try groups.world.broadcast(nil, root: ProcessGroups.coordinatorRank)
        let config = launch.config
        groups.setHangTimeout(config.faultTolerance.hangTimeoutSeconds)
        ComputeThreads.set(config.distributed.threadsPerWorker)
        let tokenizer = try RunSetup.tokenizer(config)
        let modelConfig = try RunSetup.modelConfig(config, tokenizer: tokenizer)
        // Sharded optimizer state with every worker on one host: parameters and gradients in shared memory.
        var shared: SharedTrainingMemory? = nil
        if config.distributed.shardOptimizer && config.distributed.sharedMemory && workers is MPICommunicator && workers.size > 1 {
            groups.setPhase("shared-memory set-up")
            switch try SharedTrainingMemory.allocate(communicator: workers, count: ParameterLayout(config: modelConfig).count) {
            case .success(let memory):
                shared = memory
                if workerIndex == 0 {
                    log.info("parameters and gradients in shared memory: the workers share one host (distributed.shared_memory)")
                }
            case .failure(let unavailable):
                if workerIndex == 0 {
                    log.notice("distributed.shared_memory: not used, \(unavailable); the shards go through MPI")
                }
            }
        }
        let model = try RunSetup.model(config, modelConfig: modelConfig, shared: shared)
        // Every worker wrote the same starting weights into the one shared copy: all done before anyone goes on.
        try shared?.synchronize()
        let shards = momentShards(config, count: model.layout.count, workers: workers.size)
        let group = try MPIReplicaGroup(
            communicator: workers, model: model, bucketed: config.distributed.gradientSync == .bucketed,
            sharded: shards != nil, progressThread: config.distributed.progressThread, shared: shared)
        if workerIndex == 0 && config.distributed.progressThread && config.distributed.gradientSync == .bucketed {
            log.info(
                group.hasProgressThread
                    ? "gradient buckets progress on a thread of each worker's own (distributed.progress_thread)"
                    : "distributed.progress_thread: MPI gave no MPI_THREAD_SERIALIZED; the buckets progress by polls")
        }
        let replica = try RunSetup.replica(config, model: model, group: group)
        groups.setPhase("resume broadcast")
        if launch.resumes {
            let state = replica.state
            try state.broadcast(over: groups.world, root: ProcessGroups.coordinatorRank, momentShards: shards)
            replica.restore(from: state)
            // With shared parameters every worker received the same bytes into the one copy.
            try shared?.synchronize()
        } else if shared == nil {
            // Identical replicas from the start, whatever each process computed on its own.
            groups.setPhase("initial parameter broadcast")
            try workers.broadcast(replica.model.parameters, root: 0)
        }
        var planPhase = "the first plan"
        while true {
            groups.setPhase(planPhase)
            // The coordinator, waiting for every report under the same deadline, is the one that names a silent
            // worker: waiting for its plan, give it half the deadline more to do so before ending the job here.
            let deadline = config.faultTolerance.hangTimeoutSeconds
            groups.world.hangTimeout = deadline * 1.5
            let order = try groups.broadcastOrder(nil)
            groups.world.hangTimeout = deadline
            guard case .step(let plan) = order else { break }
            let step = plan.step + 1
            if plan.rollBack {
                groups.setPhase("roll-back broadcast before step \(step)")
                // The state about to be overwritten may still be on its way to the coordinator.
                _ = try group.finishHandoff()
                let state = replica.state
                try state.broadcast(over: groups.world, root: ProcessGroups.coordinatorRank, momentShards: shards)
                replica.rollBack(to: state)
                try shared?.synchronize()
            }
            groups.setPhase("gradient sync of step \(step)")
            let report = try replica.execute(plan)
            if plan.verifyReplicas {
                groups.setPhase("replica check of step \(step)")
                try group.verifyReplicas(parameters: replica.model.parameters, step: step)
            }
            groups.setPhase("report of step \(step)")
            _ = try groups.gatherReports(report)
            groups.setPhase("evaluation logits of step \(step)")
            if plan.evaluate && config.task == .classification && !replica.evaluationLogits.isEmpty {
                try replica.evaluationLogits.withUnsafeBytes {
                    try groups.world.send($0.baseAddress!, byteCount: $0.count, to: 0, tag: HandoffTag.evaluationLogits)
                }
            }
            // Worker 0 hands over the state; with sharded optimizer state every worker its shard of the moments.
            // The buffers travel during the next step, until its update (`MPIReplicaGroup.finishGradientSum`).
            if plan.checkpoint && (workerIndex == 0 || shards != nil) {
                groups.setPhase("checkpoint handoff of step \(step)")
                try group.startHandoff(over: groups.world) { transfers in
                    try replica.state.startSend(
                        over: groups.world, to: ProcessGroups.coordinatorRank, withParameters: workerIndex == 0,
                        adding: &transfers)
                }
            }
            if plan.stop { break }
            planPhase = "the plan after step \(step)"
        }
        groups.setPhase("checkpoint handoff at the end")
        _ = try group.finishHandoff()
        // Every worker ends here together (a failing one aborts the job instead): free the shared windows.
        groups.setPhase("shared-memory release")
        try shared?.release()
    }
}
