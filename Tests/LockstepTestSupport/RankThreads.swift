import Foundation

/// Runs the ranks of an in-process job (`InProcessGroup`, `ProcessGroups.inProcess`) on threads of their own.
public enum RankThreads {
    /// Calls `body(rank)` for every rank in `0 ..< count`, each on a new thread (a rank blocks in collectives
    /// until the others arrive, so ranks cannot share a thread or a small pool), and waits for all of them.
    /// - Parameter stackSize: bytes of stack per thread; the training loop is not shallow.
    /// - Returns: each rank's result or error, in rank order.
    public static func run<T>(_ count: Int, stackSize: Int = 16 << 20, _ body: (Int) throws -> T) -> [Result<T, any Error>] {
        let results = Results<T>(count)
        withoutActuallyEscaping(body) { body in
            // `body` runs only while this function waits for the threads, so it does not actually escape; the
            // threads reach it through `results`, which lets go of it before this returns (a `Thread` keeps its
            // block until the thread ends, which may be after `done.leave()`).
            results.setBody(body)
            let done = DispatchGroup()
            for rank in 0..<count {
                done.enter()
                let thread = Thread {
                    let result = Result { try results.call(rank) }
                    results.set(rank, result)
                    done.leave()
                }
                thread.name = "lockstep.test-rank-\(rank)"
                thread.stackSize = stackSize
                thread.start()
            }
            done.wait()
            results.setBody(nil)
        }
        return results.values
    }

    /// The ranks' results, written once each from their threads.
    private final class Results<T>: @unchecked Sendable {
        private let lock = NSLock()
        private var slots: [Result<T, any Error>?]
        /// The ranks' body while they run.
        var body: ((Int) throws -> T)?

        func call(_ rank: Int) throws -> T {
            guard let body = lock.withLock({ body }) else { throw CocoaError(.featureUnsupported) }
            return try body(rank)
        }

        init(_ count: Int) { slots = Array(repeating: nil, count: count) }

        func setBody(_ body: ((Int) throws -> T)?) { lock.withLock { self.body = body } }

        func set(_ rank: Int, _ result: Result<T, any Error>) { lock.withLock { slots[rank] = result } }

        /// Every slot; a rank whose thread never stored a result (impossible once all have left) reads as an error.
        var values: [Result<T, any Error>] {
            lock.withLock { slots.map { $0 ?? .failure(CocoaError(.featureUnsupported)) } }
        }
    }
}
