import Foundation

// Two small open-addressing hash tables for the hot paths of encoding and training. Swift's Dictionary
// hashes with SipHash and would need an allocated key ([UInt8] or String) for every lookup; these hash raw
// bytes in place with a multiply-mix, which is several times faster on short words.

/// Byte strings -> dense indices 0, 1, 2, ... in insertion order. Keys are copied into one arena.
struct ByteStringTable {
    /// Per slot: index + 1, or 0 when empty.
    private var slots: [Int32]
    private var slotHashes: [UInt64]
    /// Key i is `arena[keyStarts[i] ..< keyStarts[i + 1]]`.
    private(set) var arena: [UInt8] = []
    private(set) var keyStarts: [Int] = [0]
    private var mask: Int

    init(capacity: Int = 1024) {
        var size = 16
        while size < capacity * 2 { size <<= 1 }
        slots = [Int32](repeating: 0, count: size)
        slotHashes = [UInt64](repeating: 0, count: size)
        mask = size - 1
    }

    var count: Int { keyStarts.count - 1 }

    /// Bytes held in keys, to bound a cache's memory.
    var keyBytes: Int { arena.count }

    @inline(__always)
    static func hash(_ bytes: UnsafePointer<UInt8>, _ count: Int) -> UInt64 {
        var h: UInt64 = 0x9E37_79B9_7F4A_7C15 ^ UInt64(truncatingIfNeeded: count)
        var i = 0
        while i &+ 8 <= count {
            let word = UnsafeRawPointer(bytes + i).loadUnaligned(as: UInt64.self)
            h = (h ^ word) &* 0xBF58_476D_1CE4_E5B9
            h ^= h >> 29
            i &+= 8
        }
        if i < count {
            var tail: UInt64 = 0
            var shift: UInt64 = 0
            while i < count {
                tail |= UInt64(bytes[i]) << shift
                shift &+= 8
                i &+= 1
            }
            h = (h ^ tail) &* 0xBF58_476D_1CE4_E5B9
            h ^= h >> 29
        }
        h = h &* 0x94D0_49BB_1331_11EB
        return h ^ (h >> 32)
    }

    /// The index of the key equal to `bytes[0..<count]`, or nil.
    @inline(__always)
    func find(_ bytes: UnsafePointer<UInt8>, _ count: Int, hash h: UInt64) -> Int? {
        var slot = Int(truncatingIfNeeded: h) & mask
        while true {
            let entry = slots[slot]
            if entry == 0 { return nil }
            if slotHashes[slot] == h {
                let index = Int(entry) - 1
                let start = keyStarts[index]
                if keyStarts[index + 1] - start == count
                    && arena.withUnsafeBufferPointer({ memcmp($0.baseAddress! + start, bytes, count) == 0 }) {
                    return index
                }
            }
            slot = (slot &+ 1) & mask
        }
    }

    /// Adds a key known to be absent and returns its index.
    @discardableResult
    mutating func insert(_ bytes: UnsafePointer<UInt8>, _ count: Int, hash h: UInt64) -> Int {
        let index = self.count
        arena.append(contentsOf: UnsafeBufferPointer(start: bytes, count: count))
        keyStarts.append(arena.count)
        if (index + 1) * 2 > slots.count { grow() }
        place(index: index, hash: h)
        return index
    }

    /// The bytes of key `index`.
    func key(_ index: Int) -> ArraySlice<UInt8> { arena[keyStarts[index] ..< keyStarts[index + 1]] }

    mutating func removeAll() {
        for i in slots.indices { slots[i] = 0 }
        arena.removeAll(keepingCapacity: true)
        keyStarts.removeAll(keepingCapacity: true)
        keyStarts.append(0)
    }

    private mutating func place(index: Int, hash h: UInt64) {
        var slot = Int(truncatingIfNeeded: h) & mask
        while slots[slot] != 0 { slot = (slot &+ 1) & mask }
        slots[slot] = Int32(index + 1)
        slotHashes[slot] = h
    }

    private mutating func grow() {
        let oldSlots = slots
        let oldHashes = slotHashes
        slots = [Int32](repeating: 0, count: oldSlots.count * 2)
        slotHashes = [UInt64](repeating: 0, count: oldSlots.count * 2)
        mask = slots.count - 1
        for (slot, entry) in oldSlots.enumerated() where entry != 0 {
            place(index: Int(entry) - 1, hash: oldHashes[slot])
        }
    }
}

/// Pairs of token ids (left, right) -> a 32-bit value, for the merge ranks of encoding.
struct PairTable {
    private var keys: [UInt64]
    private var values: [Int32]
    private var mask: Int
    private(set) var count = 0
    private static let empty = UInt64.max

    init(capacity: Int) {
        var size = 16
        while size < capacity * 2 { size <<= 1 }
        keys = [UInt64](repeating: PairTable.empty, count: size)
        values = [Int32](repeating: 0, count: size)
        mask = size - 1
    }

    @inline(__always)
    static func key(_ left: Int32, _ right: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: left)) << 32 | UInt64(UInt32(bitPattern: right))
    }

    @inline(__always)
    private static func slot(_ key: UInt64, _ mask: Int) -> Int {
        let h = key &* 0x9E37_79B9_7F4A_7C15
        return Int(truncatingIfNeeded: h >> 32) & mask
    }

    @inline(__always)
    func value(_ left: Int32, _ right: Int32) -> Int32? {
        let key = PairTable.key(left, right)
        var slot = PairTable.slot(key, mask)
        while true {
            let k = keys[slot]
            if k == key { return values[slot] }
            if k == PairTable.empty { return nil }
            slot = (slot &+ 1) & mask
        }
    }

    /// Sets the value for a pair unless it already has one (the first, lowest-rank merge of a pair wins).
    mutating func insertIfAbsent(_ left: Int32, _ right: Int32, _ value: Int32) {
        if (count + 1) * 2 > keys.count { grow() }
        let key = PairTable.key(left, right)
        var slot = PairTable.slot(key, mask)
        while keys[slot] != PairTable.empty {
            if keys[slot] == key { return }
            slot = (slot &+ 1) & mask
        }
        keys[slot] = key
        values[slot] = value
        count += 1
    }

    /// The value of a pair, inserting `newValue` for it first when it has none.
    @inline(__always)
    mutating func findOrInsert(_ left: Int32, _ right: Int32, _ newValue: Int32) -> Int32 {
        let key = PairTable.key(left, right)
        var slot = PairTable.slot(key, mask)
        while true {
            let k = keys[slot]
            if k == key { return values[slot] }
            if k == PairTable.empty { break }
            slot = (slot &+ 1) & mask
        }
        if (count + 1) * 2 > keys.count {
            grow()
            slot = PairTable.slot(key, mask)
            while keys[slot] != PairTable.empty { slot = (slot &+ 1) & mask }
        }
        keys[slot] = key
        values[slot] = newValue
        count += 1
        return newValue
    }

    private mutating func grow() {
        let oldKeys = keys
        let oldValues = values
        keys = [UInt64](repeating: PairTable.empty, count: oldKeys.count * 2)
        values = [Int32](repeating: 0, count: oldKeys.count * 2)
        mask = keys.count - 1
        count = 0
        for (slot, key) in oldKeys.enumerated() where key != PairTable.empty {
            insertIfAbsent(Int32(bitPattern: UInt32(key >> 32)), Int32(bitPattern: UInt32(truncatingIfNeeded: key)), oldValues[slot])
        }
    }
}
