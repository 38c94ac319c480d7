import Foundation
import LockstepDistributed
import LockstepKernels
import LockstepModel
import LockstepTestSupport
import Testing

@testable import LockstepOptimizer
@testable import LockstepTraining
import LockstepCheckpoints
import LockstepFormats
import LockstepLogging

/// `optimizer.kind: muon` through training: the Newton–Schulz work split over workers gives a lone worker's
/// bits, in-process runs match one worker to rounding and resume bit for bit, and `lockstep train` under
/// mpirun lowers the loss.
@Suite("Muon training")
struct MuonTrainingTests {
    typealias Runs = InProcessRanksTests
    static let muon = "optimizer.kind=muon"

    /// A Muon run's checkpoint at `step` under `output`: a block matrix holds only Muon's momentum (`m`, its `v`
    /// stays 0), while `adamWTensor`, which AdamW updates, has second moments.
    static func expectMuonState(_ directory: URL, _ output: String, step: Int, adamWTensor: String) throws {
        let moments = try SafeTensorsFile.parse(
            ShardedOptimizerTests.checkpointFile(directory, output, step: step, "optimizer.safetensors"))
        let matrix = "transformer.h.0.mlp.c_fc.weight"
        #expect(try moments.floats(named: "v." + matrix).allSatisfy { $0 == 0 })
        #expect(try moments.floats(named: "m." + matrix).contains { $0 != 0 })
        #expect(try moments.floats(named: "v." + adamWTensor).contains { $0 != 0 })
    }

    /// One rank of an in-process group as the optimizer's exchange, with the all-gather `MPIReplicaGroup` uses.
    final class GroupExchange: UpdateExchange {
        let communicator: InProcessCommunicator
        init(_ communicator: InProcessCommunicator) { self.communicator = communicator }
        var replicaCount: Int { communicator.size }
        var replicaIndex: Int { communicator.rank }
        func shareParts(_ buffer: UnsafeMutableBufferPointer<Float>, counts: [Int]) throws {
            try communicator.allgather(buffer.baseAddress!, counts: counts)
        }
    }

    /// Three Muon steps on the same gradient sums by 1, 2 and 3 workers, each orthogonalising only its share of
    /// the matrices and all-gathering the rest: every worker ends on the lone worker's parameters and momentum,
    /// bit for bit (the all-gather copies; no worker adds anything another did not).
    @Test(arguments: [2, 3])
    func splitNewtonSchulzMatchesOneWorkerBitForBit(workers: Int) throws {
        let layout = ParameterLayout(
            config: GPTConfig(vocabularySize: 13, contextLength: 4, layerCount: 3, headCount: 2, channels: 16))
        let settings = MuonSettings(learningRate: 0.02, scheduleLearningRate: 1e-3)
        let adam = AdamWSettings()
        var random = TestRandom(seed: 11)
        let start = random.doubles(layout.count).floats
        let gradients = (0..<3).map { _ in random.doubles(layout.count).floats }
        func run(_ optimizer: MuonOptimizer) throws -> (parameters: [Float], momentum: [Float]) {
            var p = start
            for step in gradients {
                var g = step
                try p.withUnsafeMutableBufferPointer { p in
                    try g.withUnsafeMutableBufferPointer { g in
                        try optimizer.step(
                            parameters: p, gradientSum: g, norm: 3, meanFactor: 1, maxNorm: 1,
                            scheduledLearningRate: 1e-3, settings: adam)
                    }
                }
            }
            return (p, Array(optimizer.m))
        }
        let alone = try run(MuonOptimizer(layout: layout, settings: settings))
        let group = InProcessGroup(size: workers, hangTimeout: 30)
        let results = RankThreads.run(workers) { rank -> (parameters: [Float], momentum: [Float], parts: [Int]) in
            let optimizer = MuonOptimizer(layout: layout, settings: settings, exchange: GroupExchange(group.communicators[rank]))
            let result = try run(optimizer)
            return (result.parameters, result.momentum, optimizer.partCounts)
        }
        for result in results {
            let worker = try result.get()
            #expect(worker.parameters == alone.parameters)
            #expect(worker.momentum == alone.momentum)
            #expect(worker.parts.count == workers && worker.parts.allSatisfy { $0 > 0 }, "parts \(worker.parts)")
        }
    }

    /// Two in-process workers with Muon: the same bits twice; one worker's loss curve and parameters to rounding
    /// (the two add their micro-batches' gradients in another order, so the gradient sums differ in the last
    /// bits; the Muon step itself is exact across workers, above); a resume from the step-6 checkpoint ends on
    /// the uninterrupted run's parameters and losses bit for bit; the checkpoint's second moments are 0 on the
    /// blocks' matrices, its first moments (the momentum) not.
    @Test func twoWorkersMatchOneWorkerAndResumeExactly() throws {
        let temporary = try TemporaryDirectory()
        let directory = temporary.url
        _ = try Runs.setUp(directory)
        _ = try Runs.train(directory, workers: 2, output: "runs/full", overrides: [Self.muon])
        let curve = try Runs.trainLosses(directory, "runs/full")
        #expect(curve.count == 12)
        #expect((curve.last ?? .infinity) < (curve.first ?? 0) - 0.3, "loss \(curve)")
        _ = try Runs.train(directory, workers: 2, output: "runs/again", overrides: [Self.muon])
        #expect(try Runs.finalModel(directory, "runs/again") == Runs.finalModel(directory, "runs/full"))

        _ = try Runs.train(directory, workers: 1, output: "runs/one", overrides: [Self.muon])
        let one = try Runs.trainLosses(directory, "runs/one")
        let worst = zip(one, curve).map { abs($0 - $1) / abs($1) }.max() ?? .infinity
        #expect(one.count == 12 && worst < 1e-4, "1 worker against 2: largest relative loss difference \(worst)")
        let difference = try ShardedOptimizerTests.difference(directory, "runs/one", "runs/full")
        #expect(difference.absolute <= 1e-4 * difference.scale, "1 worker against 2: \(difference)")

        try Self.expectMuonState(directory, "runs/full", step: 6, adamWTensor: "transformer.h.0.mlp.c_fc.bias")

        try ShardedOptimizerTests.interrupt(directory, "runs/full", step: 6, into: "runs/resumed")
        let resumed = try Runs.train(directory, workers: 2, output: "runs/resumed", resume: "auto", overrides: [Self.muon])
        #expect(resumed.steps == 12)
        #expect(try Runs.finalModel(directory, "runs/resumed") == Runs.finalModel(directory, "runs/full"))
        #expect(try Runs.trainLosses(directory, "runs/resumed") == Array(curve.suffix(6)))

        // The same checkpoint refuses to continue as an AdamW run.
        try ShardedOptimizerTests.interrupt(directory, "runs/full", step: 6, into: "runs/adamw")
        #expect(throws: (any Error).self) {
            try Runs.train(directory, workers: 2, output: "runs/adamw", resume: "auto")
        }
    }

    /// A resumed one-process Muon run (`lockstep train --workers 1`) ends on the uninterrupted run's parameters
    /// and losses, bit for bit. Run as its own process: inside this test process, where other suites call
    /// OpenBLAS at the same time, an in-process version once saw a last-bit difference in a Muon step (not
    /// reproduced when run alone, nor in any separate process).
    @Test func oneProcessResumeIsBitIdentical() throws {
        let temporary = try TemporaryDirectory()
        let directory = temporary.url
        _ = try DistributedTrainingTests.setUp(directory)
        let muon = ["--set", Self.muon, "--set", "training.max_steps=10", "--set", "output.log_every=1"]
        _ = try DistributedTrainingTests.train(directory, workers: 1, output: "runs/full", extra: muon)
        let checkpoints = directory.appendingPathComponent("runs/resumed/checkpoints")
        try FileManager.default.createDirectory(at: checkpoints, withIntermediateDirectories: true)
        try FileManager.default.copyItem(
            at: directory.appendingPathComponent("runs/full/checkpoints/step-0000005"),
            to: checkpoints.appendingPathComponent("step-0000005"))
        _ = try DistributedTrainingTests.train(directory, workers: 1, output: "runs/resumed", extra: muon + ["--resume", "auto"])
        #expect(
            try DistributedTrainingTests.finalModel(directory, "runs/resumed")
                == DistributedTrainingTests.finalModel(directory, "runs/full"))
        let full = try Runs.trainLosses(directory, "runs/full"), resumed = try Runs.trainLosses(directory, "runs/resumed")
        #expect(!resumed.isEmpty && Array(full.suffix(resumed.count)) == resumed, "\(resumed) against \(full)")
    }
}
