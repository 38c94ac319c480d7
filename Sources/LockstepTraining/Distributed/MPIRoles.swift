import Foundation
import LockstepData
import LockstepDistributed
import LockstepKernels
import LockstepModel

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

    public func blockGradientsReady(_ block: Int) {
        guard bucketed else { return }
        // Errors surface in `finish()`, which waits on every bucket; a callback inside backward cannot throw.
        try? buckets.bucketReady(layerCount - 1 - block)
    }

    public func finishGradientSum() throws -> Float {
        if bucketed {
            if layerCount > 0, (0..<layerCount).allSatisfy({ !buckets.isStarted($0) }) {
                // A head-only backward (classification.freeze_backbone) never reaches the trunk: no block
                // signalled, and the blocks' and embeddings' gradients stay the zeros of `zeroGradients` on every
                // worker (all run the same task), so their sum is zero too and is not worth sending.
                for bucket in 0...layerCount { try buckets.skip(bucket) }
                try buckets.bucketReady(layerCount + 1, wait: true)
                try buckets.finish(averaging: false)
                return 1 / Float(communicator.size)
            }
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

    public func verifyReplicas(parameters: UnsafeMutableBufferPointer<Float>, step: Int) throws {
        try communicator.verifyReplicasAgree(checksum: parameterChecksum(parameters), step: step)
    }
}

/// What the coordinator tells the workers before the first step.
struct RunLaunch: Codable {
    var config: RunConfig
    /// Set when resuming: the replicas then receive parameters and moments from the coordinator.
    var resumedOptimizerStep: Int?
    var resumedCursor: DataCursor?
}

/// Message tags of the checkpoint handoff from worker 0 to the coordinator.
enum HandoffTag {
    static let parameters = 11, firstMoments = 12, secondMoments = 13, position = 14
    /// Each worker's share of a classifier's dev logits, before any checkpoint handoff.
    static let evaluationLogits = 15
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

    public func execute(_ plan: StepPlan, snapshot: TrainingSnapshot) throws -> StepSummary {
        _ = try groups.broadcastPlan(plan)
        guard let reports = try groups.gatherReports(nil) else {
            throw TrainingStopped(description: "the coordinator received no worker reports")
        }
        var summary = StepSummary(reports)
        if plan.evaluate, let (examples, classes) = classifierDevSet {
            summary.evaluationLogits = try receiveEvaluationLogits(examples: examples, classes: classes)
        }
        if plan.checkpoint {
            let world = groups.world
            try world.receive(snapshot.parameters, from: 1, tag: HandoffTag.parameters)
            try world.receive(snapshot.firstMoments, from: 1, tag: HandoffTag.firstMoments)
            try world.receive(snapshot.secondMoments, from: 1, tag: HandoffTag.secondMoments)
            var position = [Int64](repeating: 0, count: 3)
            try position.withUnsafeMutableBytes {
                try world.receive($0.baseAddress!, byteCount: $0.count, from: 1, tag: HandoffTag.position)
            }
            snapshot.optimizerStep = Int(position[0])
            snapshot.cursor = DataCursor(epoch: Int(position[1]), position: Int(position[2]))
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
        _ = try groups.broadcastPlan(StepPlan.release)
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
        let tokenizer = try RunSetup.tokenizer(config)
        let modelConfig = try RunSetup.modelConfig(config, tokenizer: tokenizer)
        let link = MPIReplicaLink(groups: groups)
        var launch = RunLaunch(config: config)
        var resumed: CheckpointState? = nil
        let snapshot = TrainingSnapshot(count: ParameterLayout(config: modelConfig).count)
        if let resume, let checkpoint = try RunSetup.checkpointToResume(config, resume: resume, rejected: log) {
            let state = try RunSetup.loadCheckpoint(
                checkpoint, config: config, modelConfig: modelConfig, tokenizerVocabularySize: tokenizer.vocabularySize,
                into: snapshot)
            resumed = state
            launch.resumedOptimizerStep = state.optimizerStep
            launch.resumedCursor = state.cursor
            log("resuming from \(checkpoint.path) at step \(state.step) with \(groups.workerCount) workers")
        }
        _ = try groups.world.broadcast(launch, root: ProcessGroups.coordinatorRank)
        if resumed != nil {
            try groups.world.broadcast(snapshot.parameters, root: ProcessGroups.coordinatorRank)
            try groups.world.broadcast(snapshot.firstMoments, root: ProcessGroups.coordinatorRank)
            try groups.world.broadcast(snapshot.secondMoments, root: ProcessGroups.coordinatorRank)
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
        // Ctrl-C reaches the whole process group, and mpirun passes SIGTERM and SIGUSR1 on to every rank; the
        // coordinator alone decides when to stop (after the step and a save), and then releases the workers.
        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        signal(SIGUSR1, SIG_IGN)
        let groups = try ProcessGroups.fromMPI()
        guard let workers = groups.workers, let workerIndex = groups.workerIndex else {
            throw TrainingStopped(description: "lockstep-worker must not be world rank 0 (that is the coordinator)")
        }
        let launch: RunLaunch = try groups.world.broadcast(nil, root: ProcessGroups.coordinatorRank)
        let config = launch.config
        ComputeThreads.set(config.distributed.threadsPerWorker)
        let tokenizer = try RunSetup.tokenizer(config)
        let modelConfig = try RunSetup.modelConfig(config, tokenizer: tokenizer)
        let model = try RunSetup.model(config, modelConfig: modelConfig)
        let group = try MPIReplicaGroup(
            communicator: workers, model: model, bucketed: config.distributed.gradientSync == .bucketed)
        let replica = try RunSetup.replica(config, model: model, group: group)
        if let optimizerStep = launch.resumedOptimizerStep, let cursor = launch.resumedCursor {
            try groups.world.broadcast(replica.model.parameters, root: ProcessGroups.coordinatorRank)
            try groups.world.broadcast(replica.optimizer.m, root: ProcessGroups.coordinatorRank)
            try groups.world.broadcast(replica.optimizer.v, root: ProcessGroups.coordinatorRank)
            replica.optimizer.stepCount = optimizerStep
            replica.cursor = cursor
        } else {
            // Identical replicas from the start, whatever each process computed on its own.
            try workers.broadcast(replica.model.parameters, root: 0)
        }
        while true {
            let plan = try groups.broadcastPlan(nil)
            if plan.step == StepPlan.release.step { break }
            let report = try replica.execute(plan)
            if plan.verifyReplicas { try group.verifyReplicas(parameters: replica.model.parameters, step: plan.step + 1) }
            _ = try groups.gatherReports(report)
            if plan.evaluate && config.task == .classification && !replica.evaluationLogits.isEmpty {
                try replica.evaluationLogits.withUnsafeBytes {
                    try groups.world.send($0.baseAddress!, byteCount: $0.count, to: 0, tag: HandoffTag.evaluationLogits)
                }
            }
            if plan.checkpoint && workerIndex == 0 {
                let world = groups.world
                try world.send(replica.model.parameters, to: 0, tag: HandoffTag.parameters)
                try world.send(replica.optimizer.m, to: 0, tag: HandoffTag.firstMoments)
                try world.send(replica.optimizer.v, to: 0, tag: HandoffTag.secondMoments)
                let cursor = replica.cursor
                var position: [Int64] = [Int64(replica.optimizer.stepCount), Int64(cursor.epoch), Int64(cursor.position)]
                try position.withUnsafeMutableBytes {
                    try world.send($0.baseAddress!, byteCount: $0.count, to: 0, tag: HandoffTag.position)
                }
            }
            if plan.stop { break }
        }
    }
}
