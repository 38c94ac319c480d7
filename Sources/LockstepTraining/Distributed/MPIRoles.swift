import Foundation
import LockstepData
import LockstepDistributed
import LockstepKernels
import LockstepModel
import LockstepConfig
import LockstepLogging
import LockstepCheckpoints

/// Sums gradients over the workers' communicator, in buckets: block L-1 down to 0 as backward finishes
/// each (non-blocking allreduces overlap the rest of backward), then the embeddings and final LayerNorm,
/// whose gradients are complete only at the end. `gradient_sync: single` does one allreduce after backward.
public final class MPIReplicaGroup: ReplicaGroup {
    let communicator: any Communicator
    let buckets: GradientBuckets
    let layerCount: Int
    let bucketed: Bool

    public init(communicator: any Communicator, model: GPT, bucketed: Bool) throws {
        self.communicator = communicator
        self.bucketed = bucketed
        let layout = model.layout
        layerCount = layout.config.layerCount
        var ranges = (0..<layerCount).reversed().map { layout.blockRange($0) }
        ranges.append(0..<layout.blockRange(0).lowerBound)
        ranges.append(layout.blockRange(layerCount - 1).upperBound..<layout.count)
        buckets = try GradientBuckets(communicator: communicator, buffer: model.gradients, ranges: ranges)
    }

    public var replicaCount: Int { communicator.size }
    public var replicaIndex: Int { communicator.rank }

    /// The first error of `bucketReady` inside backward, thrown by `finishGradientSum`.
    private var bucketError: Error?

    public func blockGradientsReady(_ block: Int) {
        guard bucketed, bucketError == nil else { return }
        // A callback inside backward cannot throw: keep the error for `finishGradientSum`.
        do {
            try buckets.bucketReady(layerCount - 1 - block)
        } catch {
            bucketError = error
        }
    }

    public func finishGradientSum() throws -> Float {
        if let error = bucketError {
            bucketError = nil
            throw error
        }
        if bucketed {
            // The embeddings and ln_f are complete only now, so nothing is left to overlap with them.
            try buckets.bucketReady(layerCount, wait: true)
            try buckets.bucketReady(layerCount + 1, wait: true)
            try buckets.finish(averaging: false)
        } else {
            try buckets.allreduceAll(averaging: false)
        }
        return 1 / Float(communicator.size)
    }

    public func allAgree(_ flag: Bool) throws -> Bool {
        try communicator.allAgree(flag: flag)
    }

    /// The sum over the workers, then worker 0's result broadcast: the same bits everywhere, whatever order
    /// the reduction added in.
    public func mean(_ value: Double) throws -> Double {
        var sum = value
        try communicator.allreduceSum(&sum, count: 1)
        var mean = sum / Double(communicator.size)
        try communicator.broadcast(&mean, byteCount: MemoryLayout<Double>.size, root: 0)
        return mean
    }

    public func verifyReplicas(parameters: UnsafeMutableBufferPointer<Float>, step: Int) throws {
        try communicator.verifyReplicasAgree(checksum: parameterChecksum(parameters), step: step)
    }
}

/// What the coordinator tells the workers before the first step.
struct RunLaunch: Codable {
    var config: RunConfig
    /// Set when resuming: the coordinator then broadcasts the checkpoint's `WorkerState` to every replica.
    var resumes: Bool
}

/// Message tags of the checkpoint handoff from worker 0 to the coordinator.
enum HandoffTag {
    /// The first of the state's tags (`WorkerState.send`).
    static let state = 11
    /// Each worker's share of a classifier's dev logits, before any checkpoint handoff.
    static let evaluationLogits = 15
    /// The loss-spike window of the handed-over state, after its counters (`WorkerState.send`).
    static let lossWindow = 16
}

extension WorkerState {
    /// Worker 0's side of the checkpoint handoff: the three buffers, then the optimizer step, cursor and
    /// loss-window length, then the loss window.
    func send(over communicator: any Communicator, to destination: Int) throws {
        for (offset, buffer) in buffers.enumerated() {
            try communicator.send(buffer, to: destination, tag: HandoffTag.state + offset)
        }
        var counters = counterFields
        try counters.withUnsafeMutableBytes {
            try communicator.send(UnsafeRawPointer($0.baseAddress!), byteCount: $0.count, to: destination, tag: HandoffTag.state + 3)
        }
        if !lossWindow.isEmpty {
            try lossWindow.withUnsafeBytes {
                try communicator.send($0.baseAddress!, byteCount: $0.count, to: destination, tag: HandoffTag.lossWindow)
            }
        }
    }

    /// The coordinator's side of the checkpoint handoff.
    func receive(over communicator: any Communicator, from source: Int) throws {
        for (offset, buffer) in buffers.enumerated() {
            try communicator.receive(buffer, from: source, tag: HandoffTag.state + offset)
        }
        var counters = counterFields
        try counters.withUnsafeMutableBytes {
            try communicator.receive($0.baseAddress!, byteCount: $0.count, from: source, tag: HandoffTag.state + 3)
        }
        setCounters(counters)
        if !lossWindow.isEmpty {
            try lossWindow.withUnsafeMutableBytes {
                try communicator.receive($0.baseAddress!, byteCount: $0.count, from: source, tag: HandoffTag.lossWindow)
            }
        }
    }

    /// The resume broadcast: the coordinator's loaded checkpoint to every replica's own state.
    func broadcast(over communicator: any Communicator, root: Int) throws {
        for buffer in buffers { try communicator.broadcast(buffer, root: root) }
        var counters = counterFields
        try counters.withUnsafeMutableBytes {
            try communicator.broadcast($0.baseAddress!, byteCount: $0.count, root: root)
        }
        setCounters(counters)
        if !lossWindow.isEmpty {
            try lossWindow.withUnsafeMutableBytes {
                try communicator.broadcast($0.baseAddress!, byteCount: $0.count, root: root)
            }
        }
    }

    /// The optimizer step, the cursor and the loss window's length as they travel: four Int64s.
    private var counterFields: [Int64] {
        [Int64(optimizerStep), Int64(cursor.epoch), Int64(cursor.position), Int64(lossWindow.count)]
    }

    /// Sets the counters, and sizes `lossWindow` (zeros) for the window that follows them.
    private func setCounters(_ fields: [Int64]) {
        optimizerStep = Int(fields[0])
        cursor = DataCursor(epoch: Int(fields[1]), position: Int(fields[2]))
        let windowLength = max(0, Int(fields[3]))
        if lossWindow.count != windowLength { lossWindow = [Double](repeating: 0, count: windowLength) }
    }
}

/// The coordinator's link to worker processes: plans are broadcast over the world communicator, reports
/// gathered, and a checkpoint's state sent by worker 0. The coordinator sleeps while it waits.
public final class MPIReplicaLink: ReplicaLink {
    let groups: ProcessGroups
    /// Classifier runs with a dev set: its size and K, so that evaluation steps collect the workers' logits.
    var classifierDevSet: (examples: Int, classes: Int)?

    init(groups: ProcessGroups) {
        self.groups = groups
    }

    public var replicaCount: Int { groups.workerCount }

    /// The slowest worker's seconds for the last step: how long a hang's diagnosis listens for the workers'
    /// own timeouts (theirs start after a step's computation, the coordinator's at the plan).
    private var lastStepSeconds = 0.0

    public func execute(_ plan: StepPlan, snapshot: WorkerState) throws -> StepSummary {
        try diagnosingHangs {
            let summary = try executeStep(plan, snapshot: snapshot)
            lastStepSeconds = summary.stepSeconds
            return summary
        }
    }

    /// Runs `body`; when one of its waits passes the deadline, listens for the workers' own timeouts and
    /// throws the verdict naming the silent ranks and the phase (`ProcessGroups.diagnoseHang`).
    func diagnosingHangs<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as DistributedError {
            guard let timeout = error.timeout, let limit = groups.hangTimeout else { throw error }
            throw groups.diagnoseHang(timeout, grace: min(limit, 2 + 2 * lastStepSeconds))
        }
    }

    private func executeStep(_ plan: StepPlan, snapshot: WorkerState) throws -> StepSummary {
        let step = plan.step + 1
        groups.setPhase("plan of step \(step)")
        _ = try groups.broadcastPlan(plan)
        if plan.rollBack {
            groups.setPhase("roll-back broadcast before step \(step)")
            try snapshot.broadcast(over: groups.world, root: ProcessGroups.coordinatorRank)
        }
        groups.setPhase("report of step \(step)")
        guard let reports = try groups.gatherReports(nil) else {
            throw TrainingStopped(description: "the coordinator received no worker reports")
        }
        var summary = StepSummary(reports)
        if plan.evaluate, let (examples, classes) = classifierDevSet {
            groups.setPhase("evaluation logits of step \(step)")
            summary.evaluationLogits = try receiveEvaluationLogits(examples: examples, classes: classes)
        }
        if plan.checkpoint {
            groups.setPhase("checkpoint handoff of step \(step)")
            try snapshot.receive(over: groups.world, from: 1)
        }
        return summary
    }

    /// Worker w (world rank w + 1) holds the logits of dev examples w, w + N, ...; they are interleaved back
    /// into dev order.
    private func receiveEvaluationLogits(examples: Int, classes: Int) throws -> [Float] {
        let workers = groups.workerCount
        var logits = [Float](repeating: 0, count: examples * classes)
        for worker in 0..<min(workers, examples) {
            let mine = Array(stride(from: worker, to: examples, by: workers))
            var share = [Float](repeating: 0, count: mine.count * classes)
            try share.withUnsafeMutableBytes {
                try groups.world.receive($0.baseAddress!, byteCount: $0.count, from: worker + 1, tag: HandoffTag.evaluationLogits)
            }
            for (row, example) in mine.enumerated() {
                for k in 0..<classes { logits[example * classes + k] = share[row * classes + k] }
            }
        }
        return logits
    }

    public func release() throws {
        try diagnosingHangs {
            groups.setPhase("release of the workers")
            _ = try groups.broadcastPlan(StepPlan.release)
        }
    }
}

extension StepPlan {
    /// Not a step: the replicas stop at once.
    static let release = StepPlan(step: -1, learningRate: 0, stop: true, stopReason: "nothing left to do")
}

extension Communicator {
    func send(_ buffer: UnsafeMutableBufferPointer<Float>, to destination: Int, tag: Int) throws {
        try send(UnsafeRawPointer(buffer.baseAddress!), byteCount: buffer.count * 4, to: destination, tag: tag)
    }

    func receive(_ buffer: UnsafeMutableBufferPointer<Float>, from source: Int, tag: Int) throws {
        try receive(UnsafeMutableRawPointer(buffer.baseAddress!), byteCount: buffer.count * 4, from: source, tag: tag)
    }
}

/// The two executables' bodies: `mpirun -np 1 lockstep-coordinator --config run.yaml : -np N lockstep-worker`.
public enum DistributedRun {
    /// Rank 0. Reads the config, tells the workers, then runs the coordinator loop over MPI.
    public static func coordinator(
        configPath: String, overrides: [String], resume: String?, log: @escaping (String) -> Void
    ) throws -> RunSummary {
        let groups = try ProcessGroups.fromMPI()
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
                try snapshot.broadcast(over: groups.world, root: ProcessGroups.coordinatorRank)
            }
        }
        let stopFlag = StopFlag()
        stopFlag.installSignalHandlers()
        let coordinator = try Coordinator(
            config: config, link: link, modelConfig: modelConfig, tokenizer: tokenizer,
            resumed: resumed, stopFlag: stopFlag, console: ProgressReporter(plainLineEvery: config.output.logEvery))
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
    public static func worker() throws {
        let groups = try ProcessGroups.fromMPI()
        do {
            try workerLoop(groups)
        } catch let error as DistributedError {
            guard let timeout = error.timeout else { throw error }
            // Waiting on the coordinator: it is the one not answering, and this rank ends the job. Waiting on
            // the other workers: tell the coordinator, which names the silent rank and ends the job; end it
            // here only if the coordinator does not within the deadline.
            if !timeout.waitingFor.contains(ProcessGroups.coordinatorRank) {
                groups.reportTimeout(timeout)
                FileHandle.standardError.write(Data("lockstep-worker: \(timeout); told rank 0\n".utf8))
                Thread.sleep(forTimeInterval: (groups.hangTimeout ?? 0) + 5)
            }
            throw error
        }
    }

    private static func workerLoop(_ groups: ProcessGroups) throws {
        // Ctrl-C reaches the whole process group, and mpirun passes SIGTERM and SIGUSR1 on to every rank; the
        // coordinator alone decides when to stop (after the step and a save), and then releases the workers.
        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        signal(SIGUSR1, SIG_IGN)
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
        let model = try RunSetup.model(config, modelConfig: modelConfig)
        let group = try MPIReplicaGroup(
            communicator: workers, model: model, bucketed: config.distributed.gradientSync == .bucketed)
        let replica = try RunSetup.replica(config, model: model, group: group)
        groups.setPhase("resume broadcast")
        if launch.resumes {
            let state = replica.state
            try state.broadcast(over: groups.world, root: ProcessGroups.coordinatorRank)
            replica.restore(from: state)
        } else {
            // Identical replicas from the start, whatever each process computed on its own.
            groups.setPhase("initial parameter broadcast")
            try workers.broadcast(replica.model.parameters, root: 0)
        }
        var planPhase = "the first plan"
        while true {
            groups.setPhase(planPhase)
            let plan = try groups.broadcastPlan(nil)
            if plan.step == StepPlan.release.step { break }
            let step = plan.step + 1
            if plan.rollBack {
                groups.setPhase("roll-back broadcast before step \(step)")
                let state = replica.state
                try state.broadcast(over: groups.world, root: ProcessGroups.coordinatorRank)
                replica.rollBack(to: state)
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
            if plan.checkpoint && workerIndex == 0 {
                groups.setPhase("checkpoint handoff of step \(step)")
                try replica.state.send(over: groups.world, to: ProcessGroups.coordinatorRank)
            }
            if plan.stop { break }
            planPhase = "the plan after step \(step)"
        }
    }
}
