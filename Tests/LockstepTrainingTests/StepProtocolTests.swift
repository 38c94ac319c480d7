import Foundation
import LockstepTestSupport
import Testing

@testable import LockstepDistributed
@testable import LockstepTraining

/// The step protocol's messages (plan, report, summary) over a one-process job.
@Suite struct StepProtocolTests {
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
            skippedSpike: true, backwardSeconds: 0.25, peakResidentBytes: 1 << 30, handoffWaitSeconds: 0.03125)
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
}
