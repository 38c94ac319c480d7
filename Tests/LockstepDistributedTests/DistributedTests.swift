import Foundation
import LockstepTestSupport
import Testing

@testable import LockstepDistributed

/// The distributed pieces over `LocalCommunicator`: no MPI involved.
@Suite struct DistributedTests {
    @Test func singleProcessPlaysBothRoles() throws {
        let groups = ProcessGroups.singleProcess()
        #expect(groups.isCoordinator && groups.isWorker && groups.isSingleProcess)
        #expect(groups.workerIndex == 0 && groups.workerCount == 1)
        let plan = StepPlan(step: 4, learningRate: 3e-4, evaluate: true, stop: true, stopReason: "time budget")
        #expect(try groups.broadcastPlan(plan) == plan)
        let report = WorkerReport(step: 4, loss: 2.25, tokens: 512, gradNorm: 0.75, skippedNonFinite: true)
        #expect(try groups.gatherReports(report) == [report])
        #expect(throws: DistributedError.self) { try groups.gatherReports(nil) }
    }

    @Test func broadcastFromRootWithoutValueThrows() {
        #expect(throws: DistributedError.missingRootValue(what: "broadcast of StepPlan", root: 0)) {
            let _: StepPlan = try LocalCommunicator().broadcast(nil as StepPlan?, root: 0)
        }
    }

    @Test func reportLayoutRoundTrips() throws {
        let report = WorkerReport(
            step: 12, loss: 3.5, tokens: 4096, gradNorm: 1.25, computeSeconds: 0.5, communicationSeconds: 0.125,
            optimizerSeconds: 0.0625, stepSeconds: 0.75, skippedNonFinite: true, evaluationLossSum: 10, evaluationTokens: 4,
            skippedSpike: true)
        #expect(report.fields.count == WorkerReport.fieldCount)
        #expect(WorkerReport(fields: report.fields) == report)
        #expect(WorkerReport(fields: [1, 2]) == nil)
        var fractional = report.fields
        fractional[2] = 1.5
        #expect(WorkerReport(fields: fractional) == nil)
        let plan = StepPlan(step: 1, learningRate: 0.1, checkpoint: true, verifyReplicas: true, rollBack: true)
        #expect(try JSONDecoder().decode(StepPlan.self, from: JSONEncoder().encode(plan)) == plan)
    }

    @Test func summaryWeighsLossByTokens() {
        let summary = StepSummary([
            WorkerReport(step: 2, loss: 1, tokens: 100, gradNorm: 0.5, computeSeconds: 1, evaluationLossSum: 6, evaluationTokens: 2),
            WorkerReport(step: 2, loss: 4, tokens: 300, gradNorm: 0.5, computeSeconds: 3, skippedNonFinite: true, evaluationLossSum: 2, evaluationTokens: 2),
        ])
        #expect(summary.step == 2 && summary.tokens == 400)
        #expect(summary.loss == 3.25)
        #expect(summary.computeSeconds == 3 && summary.skippedNonFinite)
        #expect(summary.evaluationLoss == 2 && summary.evaluationTokens == 4)
        #expect(StepSummary([WorkerReport(step: 0, loss: 1, tokens: 1)]).evaluationLoss == nil)
        let nonFinite = StepSummary([
            WorkerReport(step: 0, loss: 1, tokens: 1, gradNorm: 2), WorkerReport(step: 0, loss: 1, tokens: 1, gradNorm: .nan),
        ])
        #expect(nonFinite.gradNorm.isNaN)
    }

    /// A change to any single float, to the length, or of 0 to -0 changes the checksum; equal bytes agree.
    @Test func checksumSeesEveryFloat() {
        var random = TestRandom(seed: 7)
        let parameters = (0..<45).map { _ in Float(random.uniform()) }
        let reference = parameters.withUnsafeBufferPointer(parameterChecksum)
        #expect(Array(parameters).withUnsafeBufferPointer(parameterChecksum) == reference)
        var seen: Set<UInt64> = [reference]
        for index in parameters.indices {
            var changed = parameters
            changed[index] = changed[index].nextUp
            seen.insert(changed.withUnsafeBufferPointer(parameterChecksum))
        }
        #expect(seen.count == parameters.count + 1)
        #expect(parameters.dropLast().withUnsafeBufferPointer(parameterChecksum) != reference)
        #expect([Float(0)].withUnsafeBufferPointer(parameterChecksum) != [Float(-0.0)].withUnsafeBufferPointer(parameterChecksum))
    }

    @Test func replicasAndAgreementOverOneProcess() throws {
        let local = LocalCommunicator()
        try local.verifyReplicasAgree(checksum: 99, step: 0)
        #expect(try local.allAgree(flag: true))
        #expect(try !local.allAgree(flag: false))
        #expect(try local.gather([1, 2], root: 0) == [[1, 2]])
        #expect(try local.reduceSum([3], root: 0) == [3])
    }

    @Test func localSendReachesLocalReceive() throws {
        let local = LocalCommunicator()
        var sent: [Float] = [1, 2, 3]
        var received = [Float](repeating: 0, count: 3)
        try local.send(&sent, byteCount: 12, to: 0, tag: 4)
        #expect(throws: DistributedError.nothingToReceive(tag: 5, byteCount: 12, pending: nil)) {
            try local.receive(&received, byteCount: 12, from: 0, tag: 5)
        }
        try local.receive(&received, byteCount: 12, from: 0, tag: 4)
        #expect(received == sent)
        var copy = [Float](repeating: 9, count: 3)
        try copy.withUnsafeMutableBufferPointer { try local.broadcast($0, root: 0) }
        #expect(copy == [9, 9, 9])
    }

    @Test func divergenceMessageNamesStepAndWorker() {
        let error = DistributedError.replicasDiverged(step: 40, checksums: [1, 2, 1], disagreeingWorkers: [1])
        #expect(error.description.contains("step 40") && error.description.contains("worker(s) 1 disagree"))
    }

    @Test func bucketsOverOneProcessLeaveGradients() throws {
        var gradients: [Float] = [1, 2, 3, 4, 5, 6]
        try gradients.withUnsafeMutableBufferPointer { buffer in
            let buckets = try GradientBuckets(communicator: LocalCommunicator(), buffer: buffer, ranges: [3..<6, 0..<3])
            for _ in 0..<2 {
                try buckets.bucketReady(0)
                #expect(throws: DistributedError.self) { try buckets.bucketReady(0) }
                #expect(throws: DistributedError.bucketsNotStarted(missing: [1])) { try buckets.finish() }
                try buckets.bucketReady(1)
                try buckets.finish()
            }
            try buckets.allreduceAll()
        }
        #expect(gradients == [1, 2, 3, 4, 5, 6])
    }

    @Test func badBucketRangesAreRejected() {
        var gradients = [Float](repeating: 0, count: 10)
        gradients.withUnsafeMutableBufferPointer { buffer in
            for ranges in [[0..<5, 4..<10], [0..<11], [3..<3], [-1..<2]] {
                #expect(throws: DistributedError.self, "\(ranges)") {
                    try GradientBuckets(communicator: LocalCommunicator(), buffer: buffer, ranges: ranges)
                }
            }
        }
    }
}
