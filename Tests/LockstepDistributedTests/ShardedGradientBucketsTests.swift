import Foundation
import LockstepTestSupport
import Testing

@testable import LockstepDistributed

/// The collectives of sharded optimizer state (reduce-scatter, all-gather) and `ShardedGradientBuckets`, over
/// in-process ranks and a group of one. `MPIRunTests` and the sharded `lockstep train` runs cover them over MPI.
@Suite("Sharded gradient buckets")
struct ShardedGradientBucketsTests {
    /// Rank r's gradients: element i is a value that depends on both, some of them large enough that the order
    /// of the additions shows in the sum's last bits.
    static func gradients(rank: Int, count: Int) -> [Float] {
        (0..<count).map { i in Float((i * 7 + rank * 13) % 17) * (i % 5 == 0 ? 1e7 : 0.37) - Float(rank) * 1.5e7 }
    }

    @Test func shardsAreEvenContiguousAndDependOnlyOnTheCounts() {
        #expect(ShardedGradientBuckets.shards(count: 10, workers: 4) == [0..<2, 2..<5, 5..<7, 7..<10])
        #expect(ShardedGradientBuckets.shards(count: 3, workers: 1) == [0..<3])
        #expect(ShardedGradientBuckets.shards(count: 2, workers: 3) == [0..<0, 0..<1, 1..<2])
        #expect(ShardedGradientBuckets.shards(count: 5, workers: 0).isEmpty)
    }

    /// Three ranks: each bucket reduce-scattered in place, every shard's sums are the bits of the in-process
    /// allreduce (both add in rank order); a skipped bucket keeps the rank's own gradients; the all-gather puts
    /// every rank's shard everywhere. Bad counts and buckets that leave a gap are refused by name.
    @Test func reduceScatterGivesEachShardTheAllreduceSumAndAllgatherSharesThem() throws {
        let count = 23
        let ranges = [15..<23, 4..<15, 0..<4]  // backward's order: last block first
        let group = InProcessGroup(size: 3, hangTimeout: 10)
        let results = RankThreads.run(3) { rank -> (shard: Range<Int>, sums: [Float], single: [Float], skipped: [Float], all: [Float], expected: [Float]) in
            let communicator = group.communicators[rank]
            let own = Self.gradients(rank: rank, count: count)
            var expected = own
            try communicator.allreduceSum(&expected, count: count)
            var gradients = own
            return try gradients.withUnsafeMutableBufferPointer { buffer in
                let buckets = try ShardedGradientBuckets(communicator: communicator, buffer: buffer, ranges: ranges)
                for index in ranges.indices { try buckets.bucketReady(index, wait: index == 2) }
                try buckets.poll()
                try buckets.finish()
                let sums = Array(buckets.shardSums)
                _ = buffer.update(fromContentsOf: own)
                try buckets.reduceScatterAll()
                let single = Array(buckets.shardSums)
                _ = buffer.update(fromContentsOf: own)
                try buckets.bucketReady(0)
                try buckets.skip(1)
                try buckets.bucketReady(2)
                try buckets.finish()
                let skipped = Array(buckets.shardSums)
                // The shard's sums are in place; the all-gather puts every rank's everywhere.
                try communicator.allgather(buffer.baseAddress!, counts: buckets.shards.map(\.count))
                return (buckets.shard, sums, single, skipped, Array(buffer), expected)
            }
        }
        for (rank, result) in results.enumerated() {
            let outcome = try result.get()
            #expect(outcome.shard == ShardedGradientBuckets.shards(count: count, workers: 3)[rank])
            let expectedShard = Array(outcome.expected[outcome.shard])
            #expect(outcome.sums == expectedShard, "rank \(rank)")
            #expect(outcome.single == expectedShard, "rank \(rank)")
            let own = Self.gradients(rank: rank, count: count)
            let withSkip = outcome.shard.map { ranges[1].contains($0) ? own[$0] : outcome.expected[$0] }
            #expect(outcome.skipped == withSkip, "rank \(rank)")
            // Every element from its owner's shard: the skipped bucket holds the owner's own gradients.
            let shards = ShardedGradientBuckets.shards(count: count, workers: 3)
            let gathered = (0..<count).map { i in
                let owner = shards.firstIndex { $0.contains(i) } ?? -1
                return ranges[1].contains(i) ? Self.gradients(rank: owner, count: count)[i] : outcome.expected[i]
            }
            #expect(outcome.all == gathered, "rank \(rank)")
        }

        let alone = InProcessGroup(size: 1, hangTimeout: 10).communicators[0]
        var values: [Float] = [1, 2, 3]
        let counts = #expect(throws: DistributedError.self) { try alone.allgather(&values, counts: [1, 2]) }
        #expect(counts == .invalidCounts(call: "allgather", counts: [1, 2], size: 1))
        let gap = #expect(throws: DistributedError.self) {
            try values.withUnsafeMutableBufferPointer {
                _ = try ShardedGradientBuckets(communicator: alone, buffer: $0, ranges: [0..<1, 2..<3])
            }
        }
        #expect(gap == .bucketsDoNotCover(uncovered: 1..<2, bufferCount: 3))
    }

    /// A group of one: the shard is everything, the reduce-scatter a copy, the all-gather nothing.
    @Test func aGroupOfOneKeepsItsOwnSums() throws {
        var gradients = Self.gradients(rank: 0, count: 9)
        try gradients.withUnsafeMutableBufferPointer { buffer in
            let buckets = try ShardedGradientBuckets(communicator: LocalCommunicator(), buffer: buffer, ranges: [5..<9, 0..<5])
            try buckets.bucketReady(0)
            try buckets.bucketReady(1, wait: true)
            try buckets.finish()
            #expect(buckets.shard == 0..<9)
            #expect(Array(buckets.shardSums) == Self.gradients(rank: 0, count: 9))
        }
    }
}

extension MPIRunTests {
    /// Over a singleton MPI world: the non-blocking reduce-scatter of the buckets, the blocking one, and the
    /// in-place all-gather go through MPI's calls and leave a group of one its own values.
    @Test func shardedBucketsOverASingletonWorld() throws {
        let world = try MPICommunicator.world()
        var gradients = ShardedGradientBucketsTests.gradients(rank: 0, count: 11)
        try gradients.withUnsafeMutableBufferPointer { buffer in
            let buckets = try ShardedGradientBuckets(communicator: world, buffer: buffer, ranges: [6..<11, 0..<6])
            try buckets.bucketReady(0)
            try buckets.poll()
            try buckets.bucketReady(1, wait: true)
            try buckets.finish()
            #expect(Array(buckets.shardSums) == ShardedGradientBucketsTests.gradients(rank: 0, count: 11))
            try buckets.reduceScatterAll()
            #expect(Array(buckets.shardSums) == ShardedGradientBucketsTests.gradients(rank: 0, count: 11))
            try world.allgather(buffer.baseAddress!, counts: [11])
        }
        #expect(gradients == ShardedGradientBucketsTests.gradients(rank: 0, count: 11))
        let bad = #expect(throws: DistributedError.self) { try world.allgather(&gradients, counts: [5, 6]) }
        #expect(bad == .invalidCounts(call: "MPI_Allgatherv", counts: [5, 6], size: 1))
    }
}
