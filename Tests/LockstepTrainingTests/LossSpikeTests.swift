import Foundation
import LockstepData
import LockstepDistributed
import LockstepModel
import LockstepTestSupport
import Testing

@testable import LockstepTraining
import LockstepConfig
import LockstepLogging
import LockstepCheckpoints

/// Loss spikes: a real run over data with a garbage region, whose steps must be skipped on every replica, then
/// rolled back to the last checkpoint, with training going on over the data after the garbage.
@Suite("Loss spikes")
struct LossSpikeTests {
    /// Windows per step (global_batch_tokens 256 / sequence_length 32), and the 0-based steps whose windows
    /// are random bytes: the run's steps 31, 32 and 33.
    static let windowsPerStep = 8
    static let garbageSteps = 30...32

    /// One llm.c shard of 80 steps of text (byte tokens) with random bytes over the windows of `garbageSteps`.
    static func writeSpikyData(in directory: URL) throws -> URL {
        let text = Array(SingleProcessTrainingTests.corpus().utf8.prefix(80 * 256 + 1)).map { Int32($0) }
        var tokens = text
        var random = TestRandom(seed: 11)
        // Window i covers tokens [32 i, 32 i + 33): the garbage fills the inputs and targets of those windows only.
        let first = garbageSteps.lowerBound * windowsPerStep * 32 + 1
        let end = (garbageSteps.upperBound + 1) * windowsPerStep * 32
        for index in first..<end { tokens[index] = Int32(random.next() % 256) }
        let data = directory.appendingPathComponent("spiky")
        let writer = try TokenShardWriter(directory: data, prefix: "train", tokensPerShard: tokens.count, width: .uint16)
        try writer.write(tokens)
        _ = try writer.finish()
        return data
    }

    static func yaml(data: URL, output: String) -> String {
        """
        model: {context_length: 32, layers: 2, heads: 2, channels: 32, seed: 5}
        data: {train: "\(data.path)/train_*.bin", shuffle: false}
        training: {max_steps: 60, sequence_length: 32, micro_batch_size: 4, global_batch_tokens: 256}
        schedule: {kind: cosine, learning_rate: 3.0e-3, warmup_steps: 5}
        evaluation: {every: 0}
        output: {directory: "\(output)", log_every: 10, tensorboard: false}
        checkpoint: {every: 10, keep_last: 10}
        fault_tolerance: {spike_sigma: 4, spike_window: 10, max_spikes_in_a_row: 3}
        """
    }

    static func config(data: URL, output: URL) throws -> RunConfig {
        try RunConfig(yaml: yaml(data: data, output: output.path), file: "spiky.yaml")
    }

    @Test func detectorSkipsOnlyLossesFarAboveItsWindow() {
        var detector = LossSpikeDetector(sigma: 3, capacity: 4)
        // Not acting before the window is full, even on a huge loss.
        let filling = [2.0, 50, 2.1, 1.9].map { detector.observe($0) }
        #expect(filling == [false, false, false, false])
        #expect(detector.window == [2.0, 50, 2.1, 1.9])
        let sliding = detector.observe(2.0)
        #expect(!sliding)
        #expect(detector.window == [50, 2.1, 1.9, 2.0])
        detector.reset(to: [2.0, 2.1, 1.9, 2.0])
        let (mean, deviation) = detector.statistics
        let below = detector.observe(mean + 2.9 * deviation)
        #expect(!below)
        detector.reset(to: [2.0, 2.1, 1.9, 2.0])
        let above = detector.observe(mean + 3.1 * deviation)
        #expect(above)
        // A spike stays out of the window, so the next one is judged against the same losses.
        #expect(detector.window == [2.0, 2.1, 1.9, 2.0])
        let again = [9.0, 9.0, .nan].map { detector.observe($0) }
        #expect(again == [true, true, false])
        #expect(detector.window == [2.0, 2.1, 1.9, 2.0])
        detector.reset()
        #expect(detector.window.isEmpty)
        // Keys and defaults: off unless spike_sigma is set.
        let defaults = RunConfig.FaultToleranceSettings()
        #expect(!defaults.detectsSpikes && defaults.spikeWindow == 128 && defaults.maxSpikesInARow == 5)
    }

    /// Step by step on one replica: the garbage steps' updates are skipped (parameters and optimizer state stay
    /// exactly as before the step), every other step updates.
    @Test func spikeStepsLeaveTheParametersUntouched() throws {
        let directory = try TemporaryDirectory()
        let data = try Self.writeSpikyData(in: directory.url)
        let config = try Self.config(data: data, output: directory.url.appendingPathComponent("run"))
        let tokenizer = try RunSetup.tokenizer(config)
        let modelConfig = try RunSetup.modelConfig(config, tokenizer: tokenizer)
        let replica = try RunSetup.replica(config, modelConfig: modelConfig, group: LoneReplica())
        for step in 0...(Self.garbageSteps.upperBound + 2) {
            let parameters = Array(replica.model.parameters), moments = Array(replica.optimizer.m)
            let updates = replica.optimizer.stepCount
            let report = try replica.execute(StepPlan(step: step, learningRate: config.schedule.learningRate(atStep: step)))
            if Self.garbageSteps.contains(step) {
                #expect(report.skippedSpike, "step \(step + 1) (loss \(report.loss)) was not taken for a spike")
                #expect(Array(replica.model.parameters) == parameters, "step \(step + 1) changed the parameters")
                #expect(Array(replica.optimizer.m) == moments && replica.optimizer.stepCount == updates)
            } else {
                #expect(!report.skippedSpike, "step \(step + 1) (loss \(report.loss)) was taken for a spike")
                #expect(Array(replica.model.parameters) != parameters)
                #expect(replica.optimizer.stepCount == updates + 1)
            }
        }
    }

    static func train(_ config: RunConfig, resume: URL? = nil) throws -> RunSummary {
        try ResumeTests.train(config, resume: resume?.path)
    }

    static func finalModel(_ output: URL) throws -> Data {
        try Data(contentsOf: output.appendingPathComponent("model/model.safetensors"))
    }

    /// A whole run: three spikes are skipped and counted, the third rolls back to the checkpoint of step 30, and
    /// training goes on past the garbage. A rerun decides alike, and resuming from before the spikes or after
    /// the roll-back ends with the same parameters, bit for bit.
    @Test func spikesInARowRollBackAndTheRunStaysDeterministic() throws {
        let directory = try TemporaryDirectory()
        let data = try Self.writeSpikyData(in: directory.url)
        let output = directory.url.appendingPathComponent("run")
        let config = try Self.config(data: data, output: output)
        let summary = try Self.train(config)
        #expect(summary.steps == 60)
        #expect(summary.spikeSteps == 3 && summary.rollBacks == 1)
        #expect(summary.line.contains("3 skipped loss spikes") && summary.line.contains("1 roll-back"))

        let records = try MetricsLog.read(url: output.appendingPathComponent("metrics.jsonl"))
        let spikes = records.filter { $0["spike"] == .bool(true) }
        #expect(spikes.compactMap { $0["step"] } == [.int(31), .int(32), .int(33)])
        #expect(spikes.allSatisfy { $0["skipped"] == .bool(true) && $0["kind"] == .string("train") })
        let rollBacks = records.filter { $0["kind"] == .string("rollback") }
        #expect(rollBacks.count == 1)
        #expect(rollBacks.first?["step"] == .int(33) && rollBacks.first?["checkpoint_step"] == .int(30))
        #expect(rollBacks.first?["spikes"] == .int(3))
        // After the roll-back: not spikes, and the loss is back to the text's level.
        let after = records.filter { $0["kind"] == .string("train") && ($0["step"]?.doubleValue ?? 0) > 33 }
        #expect(!after.isEmpty && after.allSatisfy { $0["spike"] == .bool(false) })
        #expect((summary.lastLoss ?? 9) < 3)

        // Step 40's checkpoint: the data went on (40 steps of windows), the updates restarted from step 30's
        // 30 (34...40 add 7), and the detector's window restarted after the roll-back.
        let state = try TrainingCheckpoint.readState(
            output.appendingPathComponent("checkpoints").appendingPathComponent(CheckpointDirectory.name(step: 40)))
        #expect(state.cursor == DataCursor(epoch: 0, position: 40 * Self.windowsPerStep))
        #expect(state.optimizerStep == 37)
        #expect(state.lossWindow?.count == 7)
        #expect(state.spikes == SpikeCounts(inARow: 0, firstOfRow: nil, skipped: 3, rollBacks: 1))

        // A rerun makes the same decisions and ends with the same parameters.
        let rerunOutput = directory.url.appendingPathComponent("rerun")
        let rerun = try Self.train(try Self.config(data: data, output: rerunOutput))
        #expect(rerun.spikeSteps == 3 && rerun.rollBacks == 1)
        let final = try Self.finalModel(output)
        #expect(try Self.finalModel(rerunOutput) == final)

        // Resumed from step 30 (before the spikes: they and the roll-back happen again) and from step 40 (after
        // the roll-back), each in a run folder holding only that checkpoint: the same final parameters.
        for step in [30, 40] {
            let resumedOutput = directory.url.appendingPathComponent("resumed-\(step)")
            let name = CheckpointDirectory.name(step: step)
            try FileManager.default.createDirectory(
                at: resumedOutput.appendingPathComponent("checkpoints"), withIntermediateDirectories: true)
            try FileManager.default.copyItem(
                at: output.appendingPathComponent("checkpoints").appendingPathComponent(name),
                to: resumedOutput.appendingPathComponent("checkpoints").appendingPathComponent(name))
            let resumedConfig = try Self.config(data: data, output: resumedOutput)
            let resumed = try ResumeTests.train(resumedConfig, resume: "auto")
            #expect(resumed.spikeSteps == 3 && resumed.rollBacks == 1, "resumed from step \(step)")
            #expect(try Self.finalModel(resumedOutput) == final, "resumed from step \(step)")
        }
    }

    /// Without a checkpoint before the spikes there is nothing to roll back to: the run stops, saying why.
    @Test func spikesInARowWithoutACheckpointStopTheRun() throws {
        let directory = try TemporaryDirectory()
        let data = try Self.writeSpikyData(in: directory.url)
        let config = try Self.config(data: data, output: directory.url.appendingPathComponent("run"))
            .with { $0.checkpoint.every = 0 }
        let error = #expect(throws: TrainingStopped.self) { try Self.train(config) }
        #expect(error?.description.contains("3 loss spikes in a row (steps 31 to 33") == true, "\(error?.description ?? "")")
        #expect(error?.description.contains("no valid checkpoint before step 31") == true)
    }
}

/// The same spiky run under mpirun with two workers, their parameters compared after every step: the spikes are
/// skipped on both alike, the roll-back reaches both, and they stay in lockstep to the end. Also with sharded
/// optimizer state, whose workers share one parameter copy in shared memory: the roll-back's broadcast writes it.
@Suite("Loss spikes over MPI", .serialized)
struct DistributedLossSpikeTests {
    @Test(arguments: [false, true]) func twoWorkersSkipAndRollBackInLockstep(sharded: Bool) throws {
        let temporary = try TemporaryDirectory()
        let directory = temporary.url
        let data = try LossSpikeTests.writeSpikyData(in: directory)
        let output = directory.appendingPathComponent("run")
        try (LossSpikeTests.yaml(data: data, output: output.path)
            + "\ndistributed: {check_replicas_every: 1, shard_optimizer: \(sharded)}\n")
            .write(to: directory.appendingPathComponent("spiky.yaml"), atomically: true, encoding: .utf8)
        let result = try MPIRun.command(
            [DistributedTrainingTests.lockstep, "train", "--config", "spiky.yaml", "--workers", "2"],
            directory: directory, timeout: 300)
        #expect(result.status == 0, "lockstep train failed:\n\(result.output)")
        #expect(result.output.contains("parameters and gradients in shared memory") == sharded, "\(result.output)")
        #expect(result.output.contains("step 31: loss"), "\(result.output)")
        #expect(result.output.contains("3 skipped loss spikes") && result.output.contains("1 roll-back"))
        let records = try MetricsLog.read(url: output.appendingPathComponent("metrics.jsonl"))
        #expect(records.filter { $0["spike"] == .bool(true) }.compactMap { $0["step"] } == [.int(31), .int(32), .int(33)])
        let rollBack = records.first { $0["kind"] == .string("rollback") }
        #expect(rollBack?["step"] == .int(33) && rollBack?["checkpoint_step"] == .int(30))
        let state = try TrainingCheckpoint.readState(
            output.appendingPathComponent("checkpoints").appendingPathComponent(CheckpointDirectory.name(step: 40)))
        #expect(state.optimizerStep == 37 && state.worldSize == 2)
        #expect(state.lossWindow?.count == 7)
    }
}
