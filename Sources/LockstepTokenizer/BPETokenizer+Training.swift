import Foundation

// MARK: - Training (Hugging Face BpeTrainer semantics)

extension BPETokenizer {
    /// Trains a byte-level BPE on `texts` (documents, read once, in batches, so they may stream from disk).
    ///
    /// As Hugging Face's `BpeTrainer` with `ByteLevel.alphabet()` as initial alphabet:
    /// 1. Ids: the special tokens first (`<|endoftext|>` = 0), then the 256 byte-level characters sorted by
    ///    code point (`!` = 1 when there is one special), then one id per new token in merge order.
    /// 2. Each text is split around special tokens (which are not counted) and by GPT-2's pattern; equal
    ///    pre-tokens are counted once with their frequency. Each starts as one token per byte.
    /// 3. Repeatedly merge the adjacent pair with the highest total count (summed over words, weighted by
    ///    word frequency; non-overlapping occurrences left to right, so `a a a` counts `(a, a)` once), until
    ///    the vocabulary has `vocabularySize` tokens or no pair occurs.
    ///    Ties: the pair with the smaller left id wins, then the smaller right id (as `BpeTrainer` does).
    ///    Ids follow the same scheme, so on a small corpus the merges usually equal Hugging Face's.
    ///
    /// - Parameters:
    ///   - vocabularySize: target size V, including the specials and the 256 bytes (never fewer).
    ///   - threads: cores for counting words; default all.
    /// - Complexity: counting is one pass over the text; each merge touches only the words that hold the
    ///   merged pair (an index pair -> words) and a max-heap of pair counts updated lazily.
    public static func train(
        texts: some Sequence<String>, vocabularySize: Int, specialTokens: [String] = ["<|endoftext|>"],
        threads: Int? = nil
    ) -> BPETokenizer {
        var counter = WordCounter(splitter: PieceSplitter(specialTokens: initialSpecials(specialTokens)), threads: threads)
        var batch: [String] = []
        var batchSize = 0
        for text in texts {
            batch.append(text)
            batchSize += text.utf8.count
            if batchSize >= WordCounter.batchBytes {
                counter.add(batch)
                batch.removeAll(keepingCapacity: true)
                batchSize = 0
            }
        }
        counter.add(batch)
        return train(counter: counter, vocabularySize: vocabularySize, specialTokens: specialTokens)
    }

    /// Trains on plain UTF-8 text files, read in pieces of about 8 MiB, so memory stays bounded by the
    /// distinct words rather than the corpus. Each piece ends just before a newline that follows a visible
    /// ASCII character, where GPT-2's pattern always splits, so the result equals training on whole files.
    /// - Parameter replacingInvalidUTF8: read invalid UTF-8 as U+FFFD instead of failing.
    /// - Throws: `TokenizerError` for a missing or unreadable file, or invalid UTF-8 (with its byte offset).
    public static func train(
        files: [URL], vocabularySize: Int, specialTokens: [String] = ["<|endoftext|>"], threads: Int? = nil,
        replacingInvalidUTF8: Bool = false
    ) throws -> BPETokenizer {
        var counter = WordCounter(splitter: PieceSplitter(specialTokens: initialSpecials(specialTokens)), threads: threads)
        for file in files {
            guard FileManager.default.fileExists(atPath: file.path) else { throw TokenizerError.missingFile(path: file.path) }
            let handle: FileHandle
            do { handle = try FileHandle(forReadingFrom: file) } catch {
                throw TokenizerError.unreadableFile(path: file.path, reason: error.localizedDescription)
            }
            defer { try? handle.close() }
            var pending: [UInt8] = []
            var offset = 0  // file offset of pending[0]
            var atEnd = false
            while !atEnd {
                let data: Data
                do { data = try handle.read(upToCount: WordCounter.batchBytes) ?? Data() } catch {
                    throw TokenizerError.unreadableFile(path: file.path, reason: error.localizedDescription)
                }
                atEnd = data.isEmpty
                pending.append(contentsOf: data)
                var cut = pending.count
                if !atEnd {
                    cut = 0
                    var k = pending.count - 1
                    while k > 0 {
                        if pending[k] == 0x0A && (0x21...0x7E).contains(pending[k - 1]) { cut = k; break }
                        k -= 1
                    }
                    if cut == 0 { continue }  // no safe cut yet: read more
                }
                // Texts of about 1 MiB, cut the same safe way, so the cores share the work.
                var texts: [String] = []
                var start = 0
                while start < cut {
                    var end = min(cut, start + (1 << 20))
                    if end < cut {
                        while end < cut && !(pending[end] == 0x0A && (0x21...0x7E).contains(pending[end - 1])) { end += 1 }
                    }
                    let bytes = pending[start..<end]
                    guard let text = replacingInvalidUTF8
                        ? String(decoding: bytes, as: UTF8.self) : String(validating: bytes, as: UTF8.self)
                    else {
                        let bad = offset + start + validUTF8Prefix(bytes)
                        throw TokenizerError.invalidFile(
                            path: file.path, line: nil, reason: "invalid UTF-8 at byte offset \(bad)")
                    }
                    texts.append(text)
                    start = end
                }
                counter.add(texts)
                pending.removeFirst(cut)
                offset += cut
            }
        }
        return train(counter: counter, vocabularySize: vocabularySize, specialTokens: specialTokens)
    }

    /// The length of the longest valid UTF-8 prefix of `bytes`: where the first invalid sequence starts.
    static func validUTF8Prefix(_ bytes: ArraySlice<UInt8>) -> Int {
        var iterator = bytes.makeIterator()
        var decoder = UTF8()
        var valid = 0
        while true {
            switch decoder.decode(&iterator) {
            case .scalarValue(let scalar): valid += UTF8.width(scalar)
            case .emptyInput, .error: return valid
            }
        }
    }

    /// The special tokens with the ids training gives them: 0, 1, ... in order, duplicates dropped.
    static func initialSpecials(_ specialTokens: [String]) -> [String: Int32] {
        var result: [String: Int32] = [:]
        for token in specialTokens where result[token] == nil { result[token] = Int32(result.count) }
        return result
    }

    static func train(counter: WordCounter, vocabularySize: Int, specialTokens: [String]) -> BPETokenizer {
        // 1. The initial vocabulary.
        var vocabulary: [String: Int32] = [:]
        var tokens: [String] = []
        for token in specialTokens where vocabulary[token] == nil {
            vocabulary[token] = Int32(tokens.count)
            tokens.append(token)
        }
        var byteIDs = [Int32](repeating: 0, count: 256)
        for byte in (0..<256).sorted(by: { ByteLevel.characters[$0].value < ByteLevel.characters[$1].value }) {
            let character = String(ByteLevel.characters[byte])
            if let existing = vocabulary[character] {
                byteIDs[byte] = existing  // a special token that is one byte character; unusual
                continue
            }
            byteIDs[byte] = Int32(tokens.count)
            vocabulary[character] = Int32(tokens.count)
            tokens.append(character)
        }

        // 2. Words as id sequences, with their counts.
        let table = counter.table
        let counts = counter.counts
        var words: [[Int32]] = []
        words.reserveCapacity(table.count)
        for index in 0..<table.count { words.append(table.key(index).map { byteIDs[Int($0)] }) }

        // 3. Merges.
        var trainer = MergeTrainer(words: words, counts: counts)
        var rules: [MergeRule] = []
        while tokens.count < vocabularySize, let (left, right) = trainer.bestPair() {
            let merged = tokens[Int(left)] + tokens[Int(right)]
            let id: Int32
            if let existing = vocabulary[merged] {
                id = existing  // the same string reached by another pair of tokens
            } else {
                id = Int32(tokens.count)
                vocabulary[merged] = id
                tokens.append(merged)
            }
            rules.append(MergeRule(left: left, right: right, result: id))
            trainer.merge(left, right, into: id)
        }
        return BPETokenizer(vocabulary: vocabulary, rules: rules, specialTokens: specialTokens)
    }
}

/// Counts distinct pre-tokens over many texts, in batches spread over the cores.
struct WordCounter {
    let splitter: PieceSplitter
    let threads: Int
    static let batchBytes = 8 << 20

    init(splitter: PieceSplitter, threads: Int?) {
        self.splitter = splitter
        self.threads = max(1, threads ?? ProcessInfo.processInfo.activeProcessorCount)
    }

    /// The distinct pre-tokens (as bytes) seen so far, and how often each occurred.
    private(set) var table = ByteStringTable(capacity: 1 << 16)
    private(set) var counts: [Int] = []

    /// Counts the pre-tokens of `texts`, spread over the cores (texts round-robin over workers).
    mutating func add(_ texts: [String]) {
        for (partTable, partCounts) in countBatch(texts) {
            partTable.arena.withUnsafeBufferPointer { arena in
                for index in 0..<partTable.count {
                    let start = partTable.keyStarts[index]
                    let length = partTable.keyStarts[index + 1] - start
                    let key = arena.baseAddress! + start
                    let hash = ByteStringTable.hash(key, length)
                    if let existing = table.find(key, length, hash: hash) {
                        counts[existing] += partCounts[index]
                    } else {
                        table.insert(key, length, hash: hash)
                        counts.append(partCounts[index])
                    }
                }
            }
        }
    }

    /// Counts of one batch, one table per worker.
    private func countBatch(_ texts: [String]) -> [(ByteStringTable, [Int])] {
        let workers = min(threads, texts.count)
        if workers == 0 { return [] }
        nonisolated(unsafe) var parts = [(ByteStringTable, [Int])](repeating: (ByteStringTable(capacity: 16), []), count: workers)
        let splitter = self.splitter
        parts.withUnsafeMutableBufferPointer { output in
            nonisolated(unsafe) let output = output
            DispatchQueue.concurrentPerform(iterations: workers) { worker in
                var table = ByteStringTable(capacity: 1 << 14)
                var counts: [Int] = []
                for i in stride(from: worker, to: texts.count, by: workers) {
                    var text = texts[i]
                    text.withUTF8 { utf8 in
                        guard let base = utf8.baseAddress else { return }
                        splitter.forEachPiece(base, count: utf8.count) { start, end in
                            let hash = ByteStringTable.hash(base + start, end &- start)
                            if let index = table.find(base + start, end &- start, hash: hash) {
                                counts[index] &+= 1
                            } else {
                                table.insert(base + start, end &- start, hash: hash)
                                counts.append(1)
                            }
                        } special: { _ in }
                    }
                }
                output[worker] = (table, counts)
            }
        }
        return parts
    }
}

/// The merge loop's state: words as id sequences with frequencies, the count of every adjacent pair, the
/// words each pair occurs in, and a max-heap of (count, pair) whose stale entries are fixed when popped.
struct MergeTrainer {
    var words: [[Int32]]
    let wordCounts: [Int]
    /// Pair (left, right) -> dense pair index into the arrays below.
    var pairIndex = PairTable(capacity: 1 << 16)
    var pairLeft: [Int32] = []
    var pairRight: [Int32] = []
    var pairCount: [Int] = []
    /// Words that held the pair when it was added; may list words that no longer hold it, or twice.
    var pairWords: [[Int32]] = []
    var heap = PairHeap()

    init(words: [[Int32]], counts: [Int]) {
        self.words = words
        self.wordCounts = counts
        for (w, word) in words.enumerated() where word.count > 1 {
            var k = 0
            while k + 1 < word.count {
                let p = pair(word[k], word[k + 1])
                pairCount[p] += counts[w]
                if pairWords[p].last != Int32(w) { pairWords[p].append(Int32(w)) }
                k += 1
            }
        }
        for p in pairCount.indices where pairCount[p] > 0 {
            heap.push(.init(count: pairCount[p], left: pairLeft[p], right: pairRight[p], index: Int32(p)))
        }
    }

    /// The index of pair (left, right), adding it with count 0 if new.
    @inline(__always)
    mutating func pair(_ left: Int32, _ right: Int32) -> Int {
        let index = Int(pairIndex.findOrInsert(left, right, Int32(pairCount.count)))
        if index == pairCount.count {
            pairLeft.append(left)
            pairRight.append(right)
            pairCount.append(0)
            pairWords.append([])
        }
        return index
    }

    /// The most frequent pair, or nil when no pair occurs any more.
    mutating func bestPair() -> (Int32, Int32)? {
        while let top = heap.pop() {
            let current = pairCount[Int(top.index)]
            if current == top.count { return current > 0 ? (top.left, top.right) : nil }
            if current > 0 { heap.push(.init(count: current, left: top.left, right: top.right, index: top.index)) }
        }
        return nil
    }

    /// Replaces every occurrence of (left, right) by `result` and updates the pair counts and index.
    mutating func merge(_ left: Int32, _ right: Int32, into result: Int32) {
        let merged = pair(left, right)
        let candidates = pairWords[merged]
        pairWords[merged] = []
        var grown: [Int] = []  // pairs with the new token, whose counts only rise: pushed once at the end
        for w32 in candidates {
            let w = Int(w32)
            let count = wordCounts[w]
            let old = words[w]
            var k = 0
            var found = false
            while k + 1 < old.count {
                if old[k] == left && old[k + 1] == right { found = true; break }
                k += 1
            }
            if !found { continue }
            // Remove the word's pairs, merge, add the new pairs.
            k = 0
            while k + 1 < old.count {
                pairCount[pair(old[k], old[k + 1])] -= count
                k += 1
            }
            var new: [Int32] = []
            new.reserveCapacity(old.count)
            var read = 0
            while read < old.count {
                if read + 1 < old.count && old[read] == left && old[read + 1] == right {
                    new.append(result)
                    read += 2
                } else {
                    new.append(old[read])
                    read += 1
                }
            }
            k = 0
            while k + 1 < new.count {
                let p = pair(new[k], new[k + 1])
                pairCount[p] += count
                if new[k] == result || new[k + 1] == result {
                    if pairWords[p].last != w32 { pairWords[p].append(w32) }
                    grown.append(p)
                }
                k += 1
            }
            words[w] = new
        }
        var pushed = Set<Int>()
        for p in grown where pairCount[p] > 0 && pushed.insert(p).inserted {
            heap.push(.init(count: pairCount[p], left: pairLeft[p], right: pairRight[p], index: Int32(p)))
        }
    }
}

/// A binary max-heap of pair counts; ties go to the smaller left id, then the smaller right id.
struct PairHeap {
    struct Entry {
        var count: Int
        var left: Int32
        var right: Int32
        var index: Int32

        /// True when `self` should be merged before `other`.
        @inline(__always)
        func precedes(_ other: Entry) -> Bool {
            if count != other.count { return count > other.count }
            if left != other.left { return left < other.left }
            return right < other.right
        }
    }

    private var entries: [Entry] = []

    mutating func push(_ entry: Entry) {
        entries.append(entry)
        var child = entries.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            if !entries[child].precedes(entries[parent]) { break }
            entries.swapAt(child, parent)
            child = parent
        }
    }

    mutating func pop() -> Entry? {
        guard let last = entries.popLast() else { return nil }
        guard !entries.isEmpty else { return last }
        let top = entries[0]
        entries[0] = last
        var parent = 0
        while true {
            let left = 2 * parent + 1
            if left >= entries.count { break }
            var best = left
            if left + 1 < entries.count && entries[left + 1].precedes(entries[left]) { best = left + 1 }
            if !entries[best].precedes(entries[parent]) { break }
            entries.swapAt(best, parent)
            parent = best
        }
        return top
    }
}
