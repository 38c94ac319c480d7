import Foundation
import Testing
@testable import LockstepData

@Suite struct PretrainingStreamTests {
    /// Shard sizes with ragged tails; with T = 4 they give 25 + 14 + 0 + 19 = 58 windows.
    static let sizes = [101, 57, 3, 80]
    static let T = 4

    private func dataset(_ folder: TemporaryFolder) throws -> TokenWindowDataset {
        try TokenWindowDataset(files: writeCountingShards(in: folder, sizes: Self.sizes), format: .llmc, sequenceLength: Self.T)
    }

    /// The next `steps` global batches as read by N workers together: each worker's slice, concatenated in rank
    /// order (each worker's inputs, then its targets), one array per step.
    private func globalBatches(
        _ data: TokenWindowDataset, G: Int, N: Int, seed: UInt64, shuffle: Bool, steps: Int,
        cursor: DataCursor = .init(epoch: 0, position: 0)
    ) throws -> (batches: [[Int32]], cursor: DataCursor) {
        let streams = try (0..<N).map {
            try PretrainingStream(dataset: data, globalBatchWindows: G, seed: seed, shuffle: shuffle, rank: $0, worldSize: N, cursor: cursor)
        }
        let local = G / N
        var inputs = [Int32](repeating: -1, count: local * Self.T)
        var targets = inputs
        var batches: [[Int32]] = []
        for _ in 0..<steps {
            var batch: [Int32] = []
            for stream in streams {
                #expect(stream.localBatchWindows == local)
                stream.nextBatch(inputs: &inputs, targets: &targets)
                batch += inputs + targets
            }
            batches.append(batch)
        }
        #expect(Set(streams.map(\.cursor)).count == 1)
        return (batches, streams[0].cursor)
    }

    @Test func windowsShareBoundaryTokensAndStayInsideShards() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let data = try dataset(folder)
        #expect(data.shardWindowCounts == [25, 14, 0, 19])
        #expect(data.windowCount == 58)
        var inputs = [Int32](repeating: 0, count: 4)
        var targets = inputs
        data.readWindow(1, inputs: &inputs, targets: &targets)
        #expect(inputs == [4, 5, 6, 7] && targets == [5, 6, 7, 8])
        // Window 25 is shard 1's first: shard 1 starts at token 101.
        data.readWindow(25, inputs: &inputs, targets: &targets)
        #expect(inputs == [101, 102, 103, 104] && targets == [102, 103, 104, 105])
        // The last window: shard 3 (tokens 161..<241), its window 18 = tokens 161 + 72 ..< 161 + 77.
        data.readWindow(57, inputs: &inputs, targets: &targets)
        #expect(inputs == [233, 234, 235, 236] && targets == [234, 235, 236, 237])
    }

    @Test func unshuffledStreamIsFileOrder() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let data = try dataset(folder)
        let stream = try PretrainingStream(dataset: data, globalBatchWindows: 6, seed: 1, shuffle: false, rank: 0, worldSize: 1)
        var inputs = [Int32](repeating: 0, count: 6 * 4)
        var targets = inputs
        var seen: [Int32] = []
        for _ in 0..<9 {
            stream.nextBatch(inputs: &inputs, targets: &targets)
            seen += stride(from: 0, to: 24, by: 4).map { inputs[$0] }
        }
        var expected: [Int32] = []
        for window in 0..<54 {
            let (shard, local) = data.location(ofWindow: window)
            expected.append(Int32([0, 101, 158, 161][shard] + local * 4))
        }
        #expect(seen == expected)
        // 58 windows = 9 batches of 6 and 4 left over: the leftover is skipped and epoch 1 begins.
        #expect(stream.cursor == DataCursor(epoch: 1, position: 0))
    }

    @Test func oneTwoAndThreeWorkersReadTheSameGlobalBatches() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let data = try dataset(folder)
        for shuffle in [true, false] {
            // 25 steps of 6 windows cross two epoch boundaries (9 steps per epoch).
            let one = try globalBatches(data, G: 6, N: 1, seed: 42, shuffle: shuffle, steps: 25)
            let two = try globalBatches(data, G: 6, N: 2, seed: 42, shuffle: shuffle, steps: 25)
            let three = try globalBatches(data, G: 6, N: 3, seed: 42, shuffle: shuffle, steps: 25)
            // Each worker appends its inputs then its targets; regroup into windows in global order and compare.
            let oneWindows = one.batches.map { windows($0, workers: 1) }
            #expect(oneWindows == two.batches.map { windows($0, workers: 2) })
            #expect(oneWindows == three.batches.map { windows($0, workers: 3) })
            #expect(one.cursor == DataCursor(epoch: 2, position: 42))
            #expect(two.cursor == one.cursor && three.cursor == one.cursor)
        }
    }

    /// Splits one step's concatenation of per-worker `inputs + targets` back into windows, in global order.
    private func windows(_ batch: [Int32], workers: Int) -> [[Int32]] {
        let local = 6 / workers
        let T = Self.T
        var result: [[Int32]] = []
        for worker in 0..<workers {
            let base = worker * 2 * local * T
            for b in 0..<local {
                let input = Array(batch[(base + b * T)..<(base + b * T + T)])
                let target = Array(batch[(base + local * T + b * T)..<(base + local * T + b * T + T)])
                result.append(input + target)
            }
        }
        return result
    }

    @Test func savedCursorContinuesTheExactSequence() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let data = try dataset(folder)
        let straight = try globalBatches(data, G: 6, N: 2, seed: 7, shuffle: true, steps: 20)
        let first = try globalBatches(data, G: 6, N: 2, seed: 7, shuffle: true, steps: 8)
        let saved = try JSONEncoder().encode(first.cursor)
        let restored = try JSONDecoder().decode(DataCursor.self, from: saved)
        #expect(restored == DataCursor(epoch: 0, position: 48))
        // Resumed with the same and with a different number of workers: the same global stream.
        let rest = try globalBatches(data, G: 6, N: 2, seed: 7, shuffle: true, steps: 12, cursor: restored)
        #expect(first.batches + rest.batches == straight.batches)
        let restThree = try globalBatches(data, G: 6, N: 3, seed: 7, shuffle: true, steps: 12, cursor: restored)
        #expect(restThree.batches.map { windows($0, workers: 3) } == rest.batches.map { windows($0, workers: 2) })
        // Assigning the cursor of a running stream moves it there too.
        let stream = try PretrainingStream(dataset: data, globalBatchWindows: 6, seed: 7, shuffle: true, rank: 1, worldSize: 2)
        stream.cursor = restored
        var inputs = [Int32](repeating: 0, count: 12)
        var targets = inputs
        stream.nextBatch(inputs: &inputs, targets: &targets)
        #expect(windows(rest.batches[0], workers: 2)[3] == Array(inputs[0..<4] + targets[0..<4]))
    }

    @Test func orderDependsOnSeedAndEpochAndIsAPermutationKeepingShardsTogether() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let data = try dataset(folder)
        func order(seed: UInt64, epoch: Int) throws -> [Int] {
            let stream = try PretrainingStream(dataset: data, globalBatchWindows: 6, seed: seed, shuffle: true, rank: 0, worldSize: 1)
            return (0..<58).map { stream.windowIndex(atPosition: $0, epoch: epoch) }
        }
        let base = try order(seed: 1, epoch: 0)
        #expect(base.sorted() == Array(0..<58))
        #expect(base != Array(0..<58))
        #expect(try order(seed: 2, epoch: 0) != base)
        #expect(try order(seed: 1, epoch: 1) != base)
        #expect(try order(seed: 1, epoch: 0) == base)
        // Each shard's windows form one contiguous run of the order, shuffled inside.
        let shardOf = base.map { data.location(ofWindow: $0).shard }
        var runs: [Int] = []
        for shard in shardOf where runs.last != shard { runs.append(shard) }
        #expect(runs.count == 3 && Set(runs) == [0, 1, 3])
        let firstShard = base.filter { data.location(ofWindow: $0).shard == 0 }
        #expect(firstShard != Array(0..<25))
    }

    @Test func rejectsBadBatchShapes() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let data = try dataset(folder)
        #expect(throws: DataError.self) { try PretrainingStream(dataset: data, globalBatchWindows: 7, seed: 0, shuffle: true, rank: 0, worldSize: 2) }
        #expect(throws: DataError.self) { try PretrainingStream(dataset: data, globalBatchWindows: 60, seed: 0, shuffle: true, rank: 0, worldSize: 1) }
        #expect(throws: DataError.self) { try PretrainingStream(dataset: data, globalBatchWindows: 6, seed: 0, shuffle: true, rank: 2, worldSize: 2) }
        #expect(throws: DataError.self) { try TokenWindowDataset(files: [], format: .llmc, sequenceLength: 4) }
    }
}
