import COpenBLAS
import Dispatch
import Glibc
import Synchronization

/// How many threads one process computes with: OpenBLAS's pool for the matrix products and the number of
/// chunks the elementwise and row-wise kernels run at once. Data-parallel workers usually want 1 each (one
/// process per core, so kernels never compete with the other workers); a single process may use all cores.
/// The default is every online core, as OpenBLAS's own default.
public enum ComputeThreads {
    private static let kernelThreads = Atomic<Int>(max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN))))

    public static func set(_ count: Int) {
        let count = max(1, count)
        openblas_set_num_threads(Int32(count))
        setKernelThreads(count)
    }

    /// Sets the kernels' thread count only, leaving OpenBLAS's: for tests, which share one process, where a
    /// change of OpenBLAS's (process-wide) count would change other tests' matrix products mid-run.
    static func setKernelThreads(_ count: Int) {
        kernelThreads.store(max(1, count), ordering: .relaxed)
    }

    /// Threads the kernels use (OpenBLAS is set to the same count by `set`).
    public static var current: Int { kernelThreads.load(ordering: .relaxed) }

    /// Sets every value of `buffer` to zero on `current` threads. A GPT-2 124M gradient is 0.5 GB: one thread's
    /// memset of it was 4.6% of a 2-thread training step.
    public static func zero(_ buffer: UnsafeMutableBufferPointer<Float>) {
        guard let base = buffer.baseAddress else { return }
        Parallel.forEachRange(buffer.count, minimumChunk: 1 << 16) { range in
            (base + range.lowerBound).update(repeating: 0, count: range.count)
        }
    }
}

/// Splits kernel loops into contiguous chunks and runs them on `ComputeThreads.current` threads.
///
/// Chunk boundaries depend only on the loop's size and the kernel's minimum chunk, never on the thread count,
/// so a kernel that reduces per chunk gives the same bits with 1 thread as with 8 (resumed runs and replicas
/// stay byte-identical whatever the machine). With one thread, or a loop smaller than two chunks, the chunks
/// run in order on the calling thread and nothing is dispatched.
enum Parallel {
    /// At most this many chunks: enough that a core slowed by another process does not hold the rest back.
    static let maximumChunks = 64

    /// The chunks `forEachChunk` uses for `count` items: `chunks` ranges of `size` items (the last may be shorter).
    static func chunking(count: Int, minimumChunk: Int) -> (chunks: Int, size: Int) {
        guard count > 0 else { return (0, 0) }
        let chunks = max(1, min(maximumChunks, count / max(1, minimumChunk)))
        let size = (count + chunks - 1) / chunks
        return ((count + size - 1) / size, size)
    }

    /// Calls `body(chunkIndex, range)` for each chunk of `0 ..< count`; chunks are disjoint and cover the range.
    /// `body` must only write memory that belongs to its own chunk.
    static func forEachChunk(_ count: Int, minimumChunk: Int, _ body: (Int, Range<Int>) -> Void) {
        let (chunks, size) = chunking(count: count, minimumChunk: minimumChunk)
        let threads = min(ComputeThreads.current, chunks)
        func run(_ chunk: Int) {
            let start = chunk &* size
            body(chunk, start..<min(count, start &+ size))
        }
        guard threads > 1 else {
            for chunk in 0..<chunks { run(chunk) }
            return
        }
        withoutActuallyEscaping(run) { run in
            // Chunks write disjoint memory through raw pointers, which Sendable checking cannot see; that is
            // what `nonisolated(unsafe)` promises here. Thread t takes chunks t, t + threads, ...
            nonisolated(unsafe) let run = run
            DispatchQueue.concurrentPerform(iterations: threads) { thread in
                for chunk in stride(from: thread, to: chunks, by: threads) { run(chunk) }
            }
        }
    }

    /// `forEachChunk` for bodies that only need the range.
    static func forEachRange(_ count: Int, minimumChunk: Int, _ body: (Range<Int>) -> Void) {
        forEachChunk(count, minimumChunk: minimumChunk) { _, range in body(range) }
    }
}
