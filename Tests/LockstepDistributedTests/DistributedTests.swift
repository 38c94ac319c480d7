import Foundation
import LockstepTestSupport
import Testing

@testable import LockstepDistributed

/// The distributed pieces over `LocalCommunicator`: no MPI involved.
@Suite struct DistributedTests {
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
