import Foundation

/// Pre-token bytes -> their ids after merging. Words repeat a lot in text ("the", " and", ...), so most
/// pre-tokens are a lookup instead of a BPE run. Bounded: it empties itself when it grows past its limits.
struct WordCache {
    private var table = ByteStringTable(capacity: 4096)
    /// The ids of word i are `ids[idStarts[i] ..< idStarts[i + 1]]`.
    private var ids: [Int32] = []
    private var idStarts: [Int] = [0]
    static let maximumWords = 100_000
    static let maximumKeyBytes = 4 << 20

    /// Appends the cached ids of `bytes[0..<count]` to `output` and returns true, or returns false.
    @inline(__always)
    func appendIDs(_ bytes: UnsafePointer<UInt8>, _ count: Int, hash: UInt64, to output: inout [Int32]) -> Bool {
        guard let index = table.find(bytes, count, hash: hash) else { return false }
        output.append(contentsOf: ids[idStarts[index] ..< idStarts[index + 1]])
        return true
    }

    mutating func insert(_ bytes: UnsafePointer<UInt8>, _ count: Int, hash: UInt64, ids wordIDs: [Int32]) {
        if table.count >= WordCache.maximumWords || table.keyBytes >= WordCache.maximumKeyBytes {
            table.removeAll()
            ids.removeAll(keepingCapacity: true)
            idStarts.removeAll(keepingCapacity: true)
            idStarts.append(0)
        }
        table.insert(bytes, count, hash: hash)
        ids.append(contentsOf: wordIDs)
        idStarts.append(ids.count)
    }
}

/// A word cache behind a lock, owned by a tokenizer. A caller that finds it busy uses a fresh cache of its own
/// rather than waiting, so concurrent callers never serialize on it.
final class CacheBox: @unchecked Sendable {
    private let lock = NSLock()
    private var cache = WordCache()

    func withCache<R>(_ body: (inout WordCache) -> R) -> R {
        if lock.try() {
            defer { lock.unlock() }
            return body(&cache)
        }
        var temporary = WordCache()
        return body(&temporary)
    }
}
