import Foundation
import LockstepTestSupport
import Testing

@testable import LockstepTraining
import LockstepCheckpoints
import LockstepFormats
import LockstepLogging

/// `distributed.shard_optimizer` (ZeRO-1) against the replicated optimizer, with in-process workers
/// (`InProcessRanksTests.train`): the same final parameters, checkpoints in the same full format, resumes across
/// worker counts and sharding, and roll-backs after loss spikes.
///
/// Where the bits agree and why: without clipping, a sharded step adds the same gradients in the same order as
/// the allreduce (the in-process group adds in rank order in both; over MPI two workers add a + b either way),
/// and AdamW is elementwise, so the runs agree bit for bit. With clipping, the norm is the root of the shards'
/// squared norms added in Double instead of one sum over the whole buffer: its last bit, and so the clipping
/// factor's, may differ, and the parameters are compared within 1e-6 of their largest magnitude.
@Suite("Sharded optimizer state")
struct ShardedOptimizerTests {
    typealias Runs = InProcessRanksTests
    static let sharded = "distributed.shard_optimizer=true"
    static let unclipped = "training.grad_clip=0"

    /// One file of the step-`step` checkpoint of the run in `output`.
    static func checkpointFile(_ directory: URL, _ output: String, step: Int, _ name: String) throws -> Data {
        try Data(contentsOf: directory.appendingPathComponent("\(output)/checkpoints/\(CheckpointDirectory.name(step: step))/\(name)"))
    }

    /// Whether two runs wrote the same parameters and AdamW moments at each of `steps`, byte for byte.
    static func sameCheckpoints(_ directory: URL, _ a: String, _ b: String, steps: [Int]) throws -> Bool {
        for step in steps {
            for name in ["model.safetensors", "optimizer.safetensors"] {
                if try checkpointFile(directory, a, step: step, name) != checkpointFile(directory, b, step: step, name) { return false }
            }
        }
        return true
    }

    /// The largest difference between the final parameters of two runs, and the largest parameter magnitude.
    static func difference(_ directory: URL, _ a: String, _ b: String) throws -> (absolute: Float, scale: Float) {
        let first = try SafeTensorsFile.parse(Runs.finalModel(directory, a))
        let second = try SafeTensorsFile.parse(Runs.finalModel(directory, b))
        #expect(first.names == second.names)
        var absolute: Float = 0, scale: Float = 0
        for name in first.names {
            for (x, y) in zip(try first.floats(named: name), try second.floats(named: name)) {
                absolute = (x - y).isNaN ? .infinity : max(absolute, abs(x - y))
                scale = max(scale, abs(y))
            }
        }
        return (absolute, scale)
    }

    /// Copies the step-`step` checkpoint of `source` into the empty run folder `output`, the point of interruption.
    static func interrupt(_ directory: URL, _ source: String, step: Int, into output: String) throws {
        let root = directory.appendingPathComponent("\(output)/checkpoints")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        let name = CheckpointDirectory.name(step: step)
        try FileManager.default.copyItem(
            at: directory.appendingPathComponent("\(source)/checkpoints/\(name)"), to: root.appendingPathComponent(name))
    }

    /// Two workers, sharded and replicated: bit for bit without clipping (final parameters, losses, both
    /// checkpoints); within the stated tolerance with clipping, which acts in this run.
    @Test func twoShardedWorkersEndOnTheReplicatedParameters() throws {
        let temporary = try TemporaryDirectory()
        let directory = temporary.url
        _ = try Runs.setUp(directory)
        _ = try Runs.train(directory, workers: 2, output: "runs/replicated", overrides: [Self.unclipped])
        _ = try Runs.train(directory, workers: 2, output: "runs/sharded", overrides: [Self.unclipped, Self.sharded])
        #expect(try Runs.finalModel(directory, "runs/sharded") == Runs.finalModel(directory, "runs/replicated"))
        #expect(try Runs.trainLosses(directory, "runs/sharded") == Runs.trainLosses(directory, "runs/replicated"))
        #expect(try Self.sameCheckpoints(directory, "runs/sharded", "runs/replicated", steps: [6, 12]))

        _ = try Runs.train(directory, workers: 2, output: "runs/replicated-clipped")
        _ = try Runs.train(directory, workers: 2, output: "runs/sharded-clipped", overrides: [Self.sharded])
        let norms = try MetricsLog.read(url: directory.appendingPathComponent("runs/replicated-clipped/metrics.jsonl"))
            .compactMap { $0["grad_norm"]?.doubleValue }
        #expect(norms.contains { $0 > 1 }, "clipping (grad_clip 1) never acted: norms \(norms)")
        let difference = try Self.difference(directory, "runs/sharded-clipped", "runs/replicated-clipped")
        #expect(difference.absolute <= 1e-6 * difference.scale, "sharded against replicated with clipping: \(difference)")
    }

    /// Four sharded workers write the checkpoints four replicated workers write, byte for byte (the moments
    /// gathered from the shards into the full format). Their step-6 checkpoint resumes on two workers, sharded
    /// or replicated, to the same bits, on the same data stream (the four workers' losses to rounding: two workers
    /// add their micro-batches in another order), and on four sharded workers to the uninterrupted run's bits.
    @Test func fourShardedWorkersCheckpointResumesOnTwo() throws {
        let temporary = try TemporaryDirectory()
        let directory = temporary.url
        _ = try Runs.setUp(directory)
        _ = try Runs.train(directory, workers: 4, output: "runs/four", overrides: [Self.unclipped, Self.sharded])
        _ = try Runs.train(directory, workers: 4, output: "runs/four-replicated", overrides: [Self.unclipped])
        #expect(try Self.sameCheckpoints(directory, "runs/four", "runs/four-replicated", steps: [6, 12]))

        let resumes = [
            ("runs/two-sharded", 2, [Self.unclipped, Self.sharded]), ("runs/two-replicated", 2, [Self.unclipped]),
            ("runs/four-resumed", 4, [Self.unclipped, Self.sharded]),
        ]
        for (output, workers, overrides) in resumes {
            try Self.interrupt(directory, "runs/four", step: 6, into: output)
            let summary = try Runs.train(directory, workers: workers, output: output, resume: "auto", overrides: overrides)
            #expect(summary.steps == 12, "\(output)")
        }
        #expect(try Runs.finalModel(directory, "runs/two-sharded") == Runs.finalModel(directory, "runs/two-replicated"))
        #expect(try Runs.finalModel(directory, "runs/four-resumed") == Runs.finalModel(directory, "runs/four"))
        #expect(try Runs.trainLosses(directory, "runs/four-resumed") == Array(Runs.trainLosses(directory, "runs/four").suffix(6)))
        let four = Array(try Runs.trainLosses(directory, "runs/four").suffix(6))
        let two = try Runs.trainLosses(directory, "runs/two-sharded")
        #expect(two.count == 6)
        let worst = zip(two, four).map { abs($0 - $1) / abs($1) }.max() ?? .infinity
        #expect(worst < 1e-5, "2 workers resumed against 4: largest relative difference \(worst)")
    }

    /// Loss spikes in a row roll two sharded workers back to the step-30 checkpoint (each receives its shard of
    /// the moments) as they do two replicated ones: the same decisions and the same final parameters.
    @Test func shardedWorkersRollBackAsReplicatedOnes() throws {
        let temporary = try TemporaryDirectory()
        let directory = temporary.url
        let data = try LossSpikeTests.writeSpikyData(in: directory)
        try LossSpikeTests.yaml(data: data, output: directory.appendingPathComponent("runs/unused").path)
            .write(to: directory.appendingPathComponent("run.yaml"), atomically: true, encoding: .utf8)
        let replicated = try Runs.train(directory, workers: 2, output: "runs/replicated", overrides: [Self.unclipped])
        let sharded = try Runs.train(directory, workers: 2, output: "runs/sharded", overrides: [Self.unclipped, Self.sharded])
        #expect(replicated.rollBacks == 1 && sharded.rollBacks == 1)
        #expect(sharded.spikeSteps == replicated.spikeSteps)
        #expect(try Runs.finalModel(directory, "runs/sharded") == Runs.finalModel(directory, "runs/replicated"))
    }
}

/// `lockstep train --workers 2 --set distributed.shard_optimizer=true` under mpirun: the replicated run's bits
/// without clipping (two workers add a + b either way), the same checkpoints, and an exact resume; summed in
/// shared memory (the default on one host) and through MPI alike.
@Suite("Sharded optimizer state over MPI", .serialized)
struct DistributedShardedOptimizerTests {
    @Test func twoShardedWorkersMatchReplicatedAndResumeExactly() throws {
        let temporary = try TemporaryDirectory()
        let directory = temporary.url
        _ = try DistributedTrainingTests.setUp(directory)
        let short = ["--set", "training.max_steps=10", "--set", ShardedOptimizerTests.unclipped]
        let sharded = ["--set", ShardedOptimizerTests.sharded]
        _ = try DistributedTrainingTests.train(directory, workers: 2, output: "runs/replicated", extra: short)
        let run = try DistributedTrainingTests.train(directory, workers: 2, output: "runs/sharded", extra: short + sharded)
        #expect(run.output.contains("optimizer state sharded over 2 workers"), "\(run.output)")
        // Both workers on this host: the shards are summed in shared memory, not through MPI.
        #expect(run.output.contains("parameters and gradients in shared memory"), "\(run.output)")
        #expect(
            try DistributedTrainingTests.finalModel(directory, "runs/sharded")
                == DistributedTrainingTests.finalModel(directory, "runs/replicated"))
        #expect(try ShardedOptimizerTests.sameCheckpoints(directory, "runs/sharded", "runs/replicated", steps: [5, 10]))
        // The MPI path (`distributed.shared_memory: false`, as across hosts): the same bits.
        let overMPI = try DistributedTrainingTests.train(
            directory, workers: 2, output: "runs/sharded-mpi", extra: short + sharded + ["--set", "distributed.shared_memory=false"])
        #expect(!overMPI.output.contains("parameters and gradients in shared memory"), "\(overMPI.output)")
        #expect(
            try DistributedTrainingTests.finalModel(directory, "runs/sharded-mpi")
                == DistributedTrainingTests.finalModel(directory, "runs/replicated"))
        // No room for the windows (a backing directory that does not exist): the run says so and goes through MPI.
        let noRoom = try MPIRun.command(
            ["OMPI_MCA_osc_sm_backing_directory=/nonexistent/lockstep", DistributedTrainingTests.lockstep, "train",
             "--config", "run.yaml", "--workers", "2", "--set", "output.directory=runs/sharded-no-room"] + short + sharded,
            directory: directory, timeout: 300)
        #expect(noRoom.status == 0, "\(noRoom.output)")
        #expect(noRoom.output.contains("distributed.shared_memory: not used, /nonexistent/lockstep has no readable room"), "\(noRoom.output)")
        #expect(
            try DistributedTrainingTests.finalModel(directory, "runs/sharded-no-room")
                == DistributedTrainingTests.finalModel(directory, "runs/replicated"))

        try ShardedOptimizerTests.interrupt(directory, "runs/sharded", step: 5, into: "runs/resumed")
        _ = try DistributedTrainingTests.train(
            directory, workers: 2, output: "runs/resumed", extra: short + sharded + ["--resume", "auto"])
        #expect(
            try DistributedTrainingTests.finalModel(directory, "runs/resumed")
                == DistributedTrainingTests.finalModel(directory, "runs/sharded"))
    }
}
