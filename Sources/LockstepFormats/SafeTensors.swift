import Foundation

// MARK: - Types

/// Element types of the safetensors format, by the names its header uses.
public enum SafeTensorsDType: String, Sendable, CaseIterable, Codable {
    case f64 = "F64", f32 = "F32", f16 = "F16", bf16 = "BF16"
    case i64 = "I64", i32 = "I32", i16 = "I16", i8 = "I8"
    case u64 = "U64", u32 = "U32", u16 = "U16", u8 = "U8"
    case bool = "BOOL"

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .f64, .i64, .u64: 8
        case .f32, .i32, .u32: 4
        case .f16, .bf16, .i16, .u16: 2
        case .i8, .u8, .bool: 1
        }
    }
}

/// A malformed or unexpected safetensors file (or a request for a tensor it does not hold).
/// The message names the file and what was expected.
public struct SafeTensorsError: Error, CustomStringConvertible, Equatable {
    /// The file concerned (its path), or `<memory>` for bytes not read from a file.
    public var file: String
    public var reason: String

    public init(file: String, _ reason: String) {
        self.file = file
        self.reason = reason
    }

    public var description: String { "\(file): \(reason)" }
}

/// One tensor of a safetensors file: its element type, shape, and raw little-endian bytes.
public struct SafeTensor: Sendable {
    public var name: String
    public var dtype: SafeTensorsDType
    public var shape: [Int]
    /// The raw little-endian data, `elementCount × dtype.size` bytes (a slice of the file's bytes).
    public var bytes: Data

    public var elementCount: Int { shape.reduce(1, *) }
}

// MARK: - Reading

/// A parsed safetensors file. Every header field is validated when it is read, so the accessors here only
/// check names and element types.
///
/// Layout of the format: an 8-byte little-endian header length N, N bytes of JSON
/// `{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {string: string}}`, then the data
/// section, in which every tensor's `[begin, end)` byte range must fit, without gaps or overlaps.
public struct SafeTensors: Sendable {
    /// The file the tensors came from (for error messages).
    public let file: String
    /// The optional `__metadata__` strings.
    public let metadata: [String: String]
    /// Tensors in data order (by begin offset).
    public let tensors: [SafeTensor]
    private let index: [String: Int]

    /// Tensor names in data order.
    public var names: [String] { tensors.map(\.name) }

    public func contains(_ name: String) -> Bool { index[name] != nil }

    /// - Throws: `SafeTensorsError` when there is no tensor of that name.
    public func tensor(named name: String) throws -> SafeTensor {
        guard let position = index[name] else {
            throw SafeTensorsError(file: file, "no tensor named '\(name)'")
        }
        return tensors[position]
    }

    /// The tensor's values as Float: F32 as is, F16, BF16 and F64 converted.
    /// - Throws: `SafeTensorsError` when absent or of another element type.
    public func floats(named name: String) throws -> [Float] {
        let tensor = try self.tensor(named: name)
        var values = [Float](repeating: 0, count: tensor.elementCount)
        try values.withUnsafeMutableBufferPointer { try copyFloats(named: name, into: $0) }
        return values
    }

    /// Copies the tensor's values as Float into `destination`, which must hold exactly its element count
    /// (this is how model parameters load without an intermediate array).
    /// - Throws: `SafeTensorsError` when absent, of a non-float element type, or of another size.
    public func copyFloats(named name: String, into destination: UnsafeMutableBufferPointer<Float>) throws {
        let tensor = try self.tensor(named: name)
        guard destination.count == tensor.elementCount else {
            throw SafeTensorsError(
                file: file, "tensor '\(name)' has \(tensor.elementCount) elements \(tensor.shape), expected \(destination.count)")
        }
        guard [.f32, .f64, .f16, .bf16].contains(tensor.dtype) else {
            throw SafeTensorsError(file: file, "tensor '\(name)' has dtype \(tensor.dtype.rawValue), expected a float type")
        }
        let count = destination.count
        guard let out = destination.baseAddress else { return }
        tensor.bytes.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            switch tensor.dtype {
            case .f32:
                for i in 0..<count {
                    out[i] = Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: i &* 4, as: UInt32.self)))
                }
            case .f64:
                for i in 0..<count {
                    out[i] = Float(Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: i &* 8, as: UInt64.self))))
                }
            case .f16:
                for i in 0..<count {
                    let bits = UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: i &* 2, as: UInt16.self))
                    out[i] = halfToFloat(bits)
                }
            case .bf16:
                for i in 0..<count {
                    let bits = UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: i &* 2, as: UInt16.self))
                    out[i] = Float(bitPattern: UInt32(bits) << 16)
                }
            default:
                break
            }
        }
    }

    /// The tensor's values as Int32: I32 as is, I64 narrowed (values outside Int32 are an error).
    public func int32s(named name: String) throws -> [Int32] {
        let values = try int64s(named: name)
        return try values.map {
            guard let narrow = Int32(exactly: $0) else {
                throw SafeTensorsError(file: file, "tensor '\(name)' holds \($0), which does not fit in Int32")
            }
            return narrow
        }
    }

    /// The tensor's values as Int64: I64 as is, I32 widened.
    public func int64s(named name: String) throws -> [Int64] {
        let tensor = try self.tensor(named: name)
        let count = tensor.elementCount
        return try tensor.bytes.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            switch tensor.dtype {
            case .i64:
                return (0..<count).map { Int64(littleEndian: raw.loadUnaligned(fromByteOffset: $0 &* 8, as: Int64.self)) }
            case .i32:
                return (0..<count).map {
                    Int64(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 &* 4, as: Int32.self)))
                }
            default:
                throw SafeTensorsError(file: file, "tensor '\(name)' has dtype \(tensor.dtype.rawValue), expected I32 or I64")
            }
        }
    }
}

/// Reading safetensors files.
public enum SafeTensorsFile {
    /// Reads and validates a whole file (memory-mapped where the system allows).
    /// - Throws: `SafeTensorsError` naming the file and the first problem found.
    public static func read(_ url: URL) throws -> SafeTensors {
        let data: Data
        do {
            data = try Data(contentsOf: url, options: .alwaysMapped)
        } catch {
            throw SafeTensorsError(file: url.path, "cannot be read: \(error.localizedDescription)")
        }
        return try parse(data, file: url.path)
    }

    /// Parses and validates safetensors bytes; `file` only names them in errors.
    public static func parse(_ data: Data, file: String = "<memory>") throws -> SafeTensors {
        func fail(_ reason: String) -> SafeTensorsError { SafeTensorsError(file: file, reason) }

        let base = data.startIndex
        guard data.count >= 8 else {
            throw fail("truncated: \(data.count) bytes, expected at least 8 for the header length")
        }
        var headerLength: UInt64 = 0
        for i in 0..<8 { headerLength |= UInt64(data[base + i]) << (8 * UInt64(i)) }
        guard headerLength <= UInt64(data.count - 8) else {
            throw fail("header length \(headerLength) goes beyond the end of the file (\(data.count) bytes)")
        }
        let headerEnd = 8 + Int(headerLength)
        let headerBytes = data[(base + 8)..<(base + headerEnd)]

        let header: Header
        do {
            header = try JSONDecoder().decode(Header.self, from: headerBytes)
        } catch let error as DecodingError {
            throw fail("bad JSON header: \(describe(error))")
        } catch let error as HeaderError {
            throw fail("bad JSON header: \(error.reason)")
        } catch {
            throw fail("bad JSON header: \(error)")
        }

        let dataSize = data.count - headerEnd
        var tensors: [SafeTensor] = []
        var spans: [(name: String, begin: Int, end: Int)] = []
        for (name, entry) in header.entries {
            guard let dtype = SafeTensorsDType(rawValue: entry.dtype) else {
                let known = SafeTensorsDType.allCases.map(\.rawValue).joined(separator: ", ")
                throw fail("tensor '\(name)': unknown dtype '\(entry.dtype)', expected one of \(known)")
            }
            guard entry.shape.allSatisfy({ $0 >= 0 }) else {
                throw fail("tensor '\(name)': negative dimension in shape \(entry.shape)")
            }
            guard entry.dataOffsets.count == 2 else {
                throw fail("tensor '\(name)': data_offsets has \(entry.dataOffsets.count) numbers, expected 2")
            }
            let begin = entry.dataOffsets[0], end = entry.dataOffsets[1]
            guard 0 <= begin, begin <= end else {
                throw fail("tensor '\(name)': data_offsets [\(begin), \(end)] are not an ordered pair of non-negative offsets")
            }
            guard end <= dataSize else {
                throw fail("tensor '\(name)': data_offsets [\(begin), \(end)] go beyond the data section of \(dataSize) bytes")
            }
            var expectedBytes = dtype.size
            for dimension in entry.shape {
                let (product, overflow) = expectedBytes.multipliedReportingOverflow(by: dimension)
                guard !overflow else { throw fail("tensor '\(name)': shape \(entry.shape) is too large") }
                expectedBytes = product
            }
            guard expectedBytes == end - begin else {
                throw fail(
                    "tensor '\(name)': shape \(entry.shape) of \(dtype.rawValue) needs \(expectedBytes) bytes, but data_offsets [\(begin), \(end)] span \(end - begin)")
            }
            spans.append((name, begin, end))
            let start = base + headerEnd + begin
            tensors.append(SafeTensor(name: name, dtype: dtype, shape: entry.shape, bytes: data[start..<(start + end - begin)]))
        }

        // The data section must be covered exactly: sorted by offset, each tensor begins where the last ended.
        let order = spans.indices.sorted { (spans[$0].begin, spans[$0].end) < (spans[$1].begin, spans[$1].end) }
        var position = 0
        var previous = "the start of the data section"
        for i in order {
            let span = spans[i]
            if span.begin < position {
                throw fail("tensor '\(span.name)' at [\(span.begin), \(span.end)) overlaps \(previous), which ends at \(position)")
            }
            if span.begin > position {
                throw fail("gap of \(span.begin - position) bytes before tensor '\(span.name)' at \(span.begin) (after \(previous), which ends at \(position))")
            }
            position = span.end
            previous = "tensor '\(span.name)'"
        }
        if position != dataSize {
            throw fail("data section has \(dataSize) bytes but the tensors cover only \(position)")
        }

        let sorted = order.map { tensors[$0] }
        return SafeTensors(file: file, metadata: header.metadata, tensors: sorted)
    }

    private static func describe(_ error: DecodingError) -> String {
        func path(_ context: DecodingError.Context) -> String {
            let keys = context.codingPath.map(\.stringValue).joined(separator: ".")
            return keys.isEmpty ? "" : " at '\(keys)'"
        }
        switch error {
        case .typeMismatch(let type, let context): return "expected \(type)\(path(context)): \(context.debugDescription)"
        case .valueNotFound(let type, let context): return "expected \(type)\(path(context))"
        case .keyNotFound(let key, let context): return "missing key '\(key.stringValue)'\(path(context))"
        case .dataCorrupted(let context): return "\(context.debugDescription)\(path(context))"
        @unknown default: return "\(error)"
        }
    }
}

extension SafeTensors {
    fileprivate init(file: String, metadata: [String: String], tensors: [SafeTensor]) {
        self.file = file
        self.metadata = metadata
        self.tensors = tensors
        var index: [String: Int] = [:]
        for (position, tensor) in tensors.enumerated() { index[tensor.name] = position }
        self.index = index
    }
}

// MARK: - Header decoding

private struct HeaderError: Error { var reason: String }

private struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

private struct Header: Decodable {
    struct Entry: Decodable {
        var dtype: String
        var shape: [Int]
        var dataOffsets: [Int]

        enum CodingKeys: String, CodingKey {
            case dtype, shape
            case dataOffsets = "data_offsets"
        }
    }

    var entries: [String: Entry] = [:]
    var metadata: [String: String] = [:]

    init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: AnyKey.self)
        for key in container.allKeys {
            if key.stringValue == "__metadata__" {
                metadata = try container.decode([String: String].self, forKey: key)
            } else {
                entries[key.stringValue] = try container.decode(Entry.self, forKey: key)
            }
        }
    }
}

/// IEEE 754 half precision to Float, subnormals, infinities and NaN included.
private func halfToFloat(_ bits: UInt16) -> Float {
    let sign: UInt32 = UInt32(bits >> 15) << 31
    let exponent = Int((bits >> 10) & 0x1F)
    let mantissa = UInt32(bits & 0x3FF)
    if exponent == 0 {
        let magnitude = Float(mantissa) * 0x1p-24  // subnormal (or zero)
        return sign != 0 ? -magnitude : magnitude
    }
    if exponent == 31 {
        return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13))
    }
    return Float(bitPattern: sign | (UInt32(exponent - 15 + 127) << 23) | (mantissa << 13))
}

// MARK: - Writing

/// Collects tensors and metadata, then writes a safetensors file as Hugging Face's library does: tensors
/// ordered by element size (largest first, so every tensor stays aligned) then by name, and the JSON header
/// padded with spaces to a multiple of 8 bytes.
public struct SafeTensorsWriter {
    private struct Pending {
        var dtype: SafeTensorsDType
        var shape: [Int]
        var bytes: Payload
    }

    /// A tensor's little-endian bytes: copied when added, or read from the caller's memory when written.
    private enum Payload {
        case owned(Data)
        case borrowed(UnsafeRawBufferPointer)

        var count: Int {
            switch self {
            case .owned(let data): data.count
            case .borrowed(let raw): raw.count
            }
        }
    }

    private var pending: [String: Pending] = [:]
    /// Strings stored under `__metadata__`.
    public var metadata: [String: String] = [:]

    public init() {}

    public var names: [String] { pending.keys.sorted() }

    public mutating func add(_ name: String, floats: UnsafeBufferPointer<Float>, shape: [Int]) throws {
        try check(name, count: floats.count, shape: shape)
        var bytes = Data(count: floats.count * 4)
        bytes.withUnsafeMutableBytes { raw in
            for (i, value) in floats.enumerated() {
                raw.storeBytes(of: value.bitPattern.littleEndian, toByteOffset: i &* 4, as: UInt32.self)
            }
        }
        pending[name] = Pending(dtype: .f32, shape: shape, bytes: .owned(bytes))
    }

    /// `add` without the copy, for large tensors: the floats are read when the file is written, so they must
    /// stay valid and unchanged until `write` or `serialized` has returned.
    public mutating func add(_ name: String, borrowing floats: UnsafeBufferPointer<Float>, shape: [Int]) throws {
        #if _endian(little)
            try check(name, count: floats.count, shape: shape)
            pending[name] = Pending(dtype: .f32, shape: shape, bytes: .borrowed(UnsafeRawBufferPointer(floats)))
        #else
            try add(name, floats: floats, shape: shape)
        #endif
    }

    public mutating func add(_ name: String, floats: [Float], shape: [Int]) throws {
        try floats.withUnsafeBufferPointer { try add(name, floats: $0, shape: shape) }
    }

    public mutating func add(_ name: String, int32s: [Int32], shape: [Int]) throws {
        try check(name, count: int32s.count, shape: shape)
        var bytes = Data(count: int32s.count * 4)
        bytes.withUnsafeMutableBytes { raw in
            for (i, value) in int32s.enumerated() { raw.storeBytes(of: value.littleEndian, toByteOffset: i &* 4, as: Int32.self) }
        }
        pending[name] = Pending(dtype: .i32, shape: shape, bytes: .owned(bytes))
    }

    public mutating func add(_ name: String, int64s: [Int64], shape: [Int]) throws {
        try check(name, count: int64s.count, shape: shape)
        var bytes = Data(count: int64s.count * 8)
        bytes.withUnsafeMutableBytes { raw in
            for (i, value) in int64s.enumerated() { raw.storeBytes(of: value.littleEndian, toByteOffset: i &* 8, as: Int64.self) }
        }
        pending[name] = Pending(dtype: .i64, shape: shape, bytes: .owned(bytes))
    }

    private func check(_ name: String, count: Int, shape: [Int]) throws {
        if name == "__metadata__" || name.isEmpty {
            throw SafeTensorsError(file: "<writer>", "'\(name)' cannot name a tensor")
        }
        if pending[name] != nil {
            throw SafeTensorsError(file: "<writer>", "tensor '\(name)' added twice")
        }
        guard shape.allSatisfy({ $0 >= 0 }), shape.reduce(1, *) == count else {
            throw SafeTensorsError(file: "<writer>", "tensor '\(name)': shape \(shape) does not hold \(count) values")
        }
    }

    /// The whole file's bytes.
    public func serialized() -> Data {
        withParts { parts in
            var out = Data(capacity: parts.reduce(0) { $0 + $1.count })
            for part in parts { out.append(contentsOf: part) }
            return out
        }
    }

    /// Writes the file atomically (temporary file, fsync, rename), so a reader never sees half of it; the
    /// tensors go to the file straight from their bytes.
    public func write(to url: URL) throws {
        try withParts { try AtomicFile.write(parts: $0, to: url) }
    }

    /// Calls `body` with the file's parts in order: the header's length, the header, each tensor's bytes.
    private func withParts<R>(_ body: ([UnsafeRawBufferPointer]) throws -> R) rethrows -> R {
        let order = pending.keys.sorted { a, b in
            let sizeA = pending[a]!.dtype.size, sizeB = pending[b]!.dtype.size
            return sizeA != sizeB ? sizeA > sizeB : a < b
        }
        var offsets: [String: (Int, Int)] = [:]
        var position = 0
        for name in order {
            let size = pending[name]!.bytes.count
            offsets[name] = (position, position + size)
            position += size
        }

        var json = "{"
        var fields: [String] = []
        if !metadata.isEmpty {
            let pairs = metadata.keys.sorted().map { "\(JSONText.quoted($0)):\(JSONText.quoted(metadata[$0]!))" }
            fields.append("\"__metadata__\":{\(pairs.joined(separator: ","))}")
        }
        for name in pending.keys.sorted() {
            let tensor = pending[name]!
            let (begin, end) = offsets[name]!
            let shape = tensor.shape.map(String.init).joined(separator: ",")
            fields.append("\(JSONText.quoted(name)):{\"dtype\":\"\(tensor.dtype.rawValue)\",\"shape\":[\(shape)],\"data_offsets\":[\(begin),\(end)]}")
        }
        json += fields.joined(separator: ",") + "}"
        var header = Data(json.utf8)
        let padding = (8 - header.count % 8) % 8
        header.append(contentsOf: [UInt8](repeating: 0x20, count: padding))

        var prefix = Data()
        var length = UInt64(header.count).littleEndian
        withUnsafeBytes(of: &length) { prefix.append(contentsOf: $0) }
        prefix.append(header)
        let owned = order.compactMap { name -> Data? in
            if case .owned(let data) = pending[name]!.bytes { return data }
            return nil
        }
        // Data's bytes are only valid inside withUnsafeBytes: keep every owned tensor's open while body runs.
        func withOwned(_ index: Int, _ raws: [UnsafeRawBufferPointer], _ body: ([UnsafeRawBufferPointer]) throws -> R) rethrows -> R {
            if index == owned.count { return try body(raws) }
            return try owned[index].withUnsafeBytes { try withOwned(index + 1, raws + [$0], body) }
        }
        return try prefix.withUnsafeBytes { prefixBytes in
            try withOwned(0, []) { ownedBytes in
                var nextOwned = ownedBytes.makeIterator()
                var parts = [prefixBytes]
                for name in order {
                    switch pending[name]!.bytes {
                    case .owned: parts.append(nextOwned.next()!)
                    case .borrowed(let raw): parts.append(raw)
                    }
                }
                return try body(parts)
            }
        }
    }
}

