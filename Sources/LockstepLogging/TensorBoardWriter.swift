import Foundation

/// A problem creating or writing a TensorBoard event file, naming the path.
public struct TensorBoardWriterError: Error, Equatable, CustomStringConvertible {
    public var path: String
    public var message: String
    public var description: String { "\(path): \(message)" }
}

/// Writes scalar summaries as a TensorBoard event file, without TensorFlow or a protobuf library.
///
/// The file is `events.out.tfevents.<unix-seconds>.<hostname>.<pid>.lockstep` in the log directory (a `.N`
/// suffix is added if that name is taken). It is a sequence of TFRecords, each holding one serialized
/// `tensorflow.Event` protobuf: first `{wall_time, file_version: "brain.Event:2"}`, then one event
/// per `addScalar(s)` call carrying a `Summary` of `simple_value`s, which TensorBoard shows as scalars.
///
/// Events collect in memory and reach the file on `flush()` (call it once per logging interval); the file
/// only ever grows by whole records, so TensorBoard can read it while training runs.
/// Not thread-safe: one owner (the coordinator) writes.
public final class TensorBoardWriter {
    /// The event file this writer appends to.
    public let fileURL: URL
    private var handle: FileHandle?
    private var pending: [UInt8] = []

    /// Creates the log directory if needed and a new event file in it, and writes the file-version record.
    /// - Throws: `TensorBoardWriterError` naming the directory or file.
    public init(logDirectory: URL) throws {
        let fileManager = FileManager.default
        do {
            try fileManager.createDirectory(at: logDirectory, withIntermediateDirectories: true)
        } catch {
            throw TensorBoardWriterError(path: logDirectory.path, message: "cannot create the log directory: \(error)")
        }
        let now = Date().timeIntervalSince1970
        let host = ProcessInfo.processInfo.hostName.map { $0 == "/" ? "_" : $0 }
        let base = "events.out.tfevents.\(Int(now)).\(String(host)).\(ProcessInfo.processInfo.processIdentifier).lockstep"
        var url = logDirectory.appendingPathComponent(base)
        var suffix = 1
        while fileManager.fileExists(atPath: url.path) {
            url = logDirectory.appendingPathComponent("\(base).\(suffix)")
            suffix += 1
        }
        fileURL = url
        guard fileManager.createFile(atPath: url.path, contents: nil) else {
            throw TensorBoardWriterError(path: url.path, message: "cannot create the event file")
        }
        do {
            handle = try FileHandle(forWritingTo: url)
        } catch {
            throw TensorBoardWriterError(path: url.path, message: "cannot open for writing: \(error)")
        }
        pending += TFRecord.frame(TensorBoardEvent.fileVersion(wallTime: now))
        try flush()
    }

    deinit {
        try? flush()
        try? handle?.close()
    }

    /// Queues one scalar (TensorBoard stores it as a 32-bit float).
    /// - Parameter wallTime: seconds since 1970; nil for now.
    public func addScalar(tag: String, value: Double, step: Int, wallTime: Double? = nil) {
        addScalars([(tag, value)], step: step, wallTime: wallTime)
    }

    /// Queues several scalars of one step as a single event.
    public func addScalars(_ values: [(tag: String, value: Double)], step: Int, wallTime: Double? = nil) {
        let time = wallTime ?? Date().timeIntervalSince1970
        pending += TFRecord.frame(TensorBoardEvent.scalars(values, step: step, wallTime: time))
    }

    /// Queues TensorBoard's restart marker, an event with `session_log { status: START }` at `step`: a reader
    /// (TensorBoard's `EventAccumulator` with its default `purge_orphaned_data`) drops every event of an earlier
    /// file at this step or later. A resumed run writes it at its first new step, so the steps an interrupted
    /// run logged past its checkpoint are shown once, from the resumed run.
    public func addSessionStart(step: Int, wallTime: Double? = nil) {
        pending += TFRecord.frame(TensorBoardEvent.sessionStart(step: step, wallTime: wallTime ?? Date().timeIntervalSince1970))
    }

    /// Writes queued events to the file.
    /// - Throws: `TensorBoardWriterError` if the write fails or the writer was closed with events queued.
    public func flush() throws {
        if pending.isEmpty { return }
        guard let handle else {
            throw TensorBoardWriterError(path: fileURL.path, message: "events added after close")
        }
        do {
            try handle.write(contentsOf: pending)
        } catch {
            throw TensorBoardWriterError(path: fileURL.path, message: "write failed: \(error)")
        }
        pending.removeAll(keepingCapacity: true)
    }

    /// Flushes and closes the file.
    public func close() throws {
        try flush()
        try handle?.close()
        handle = nil
    }
}

// MARK: - Event protobufs

/// Serialized `tensorflow.Event` messages (tensorboard/compat/proto/event.proto and summary.proto):
/// ```
/// Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5;
///           SessionLog session_log = 6; }
/// SessionLog { SessionStatus status = 1; }   (START = 1)
/// Summary { repeated Value value = 1; }
/// Value   { string tag = 1; float simple_value = 2; }
/// ```
enum TensorBoardEvent {
    static func fileVersion(wallTime: Double) -> [UInt8] {
        var event = ProtobufWriter()
        event.double(field: 1, wallTime)  // step 0 is protobuf's default, so it is left out
        event.string(field: 3, "brain.Event:2")
        return event.bytes
    }

    /// `Event { wall_time, step, session_log = 6 { status = 1: START (1) } }`.
    static func sessionStart(step: Int, wallTime: Double) -> [UInt8] {
        var sessionLog = ProtobufWriter()
        sessionLog.varint(field: 1, 1)
        var event = ProtobufWriter()
        event.double(field: 1, wallTime)
        event.int64(field: 2, Int64(step))
        event.message(field: 6, sessionLog.bytes)
        return event.bytes
    }

    static func scalars(_ values: [(tag: String, value: Double)], step: Int, wallTime: Double) -> [UInt8] {
        var summary = ProtobufWriter()
        for (tag, value) in values {
            var entry = ProtobufWriter()
            entry.string(field: 1, tag)
            entry.float(field: 2, Float(value))
            summary.message(field: 1, entry.bytes)
        }
        var event = ProtobufWriter()
        event.double(field: 1, wallTime)
        event.int64(field: 2, Int64(step))
        event.message(field: 5, summary.bytes)
        return event.bytes
    }
}

/// Protobuf wire format, the few pieces events need: a key is `field << 3 | wire type`, with wire types
/// 0 varint, 1 fixed 64-bit, 2 length-delimited, 5 fixed 32-bit; fixed-width values are little-endian.
struct ProtobufWriter {
    var bytes: [UInt8] = []

    mutating func varint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    mutating func key(field: Int, wireType: UInt64) { varint(UInt64(field) << 3 | wireType) }

    mutating func varint(field: Int, _ value: UInt64) {
        key(field: field, wireType: 0)
        varint(value)
    }

    mutating func int64(field: Int, _ value: Int64) {
        key(field: field, wireType: 0)
        varint(UInt64(bitPattern: value))  // negatives take 10 bytes, as protobuf's int64 does
    }

    mutating func double(field: Int, _ value: Double) {
        key(field: field, wireType: 1)
        littleEndian(value.bitPattern)
    }

    mutating func float(field: Int, _ value: Float) {
        key(field: field, wireType: 5)
        littleEndian(value.bitPattern)
    }

    mutating func string(field: Int, _ value: String) { message(field: field, Array(value.utf8)) }

    mutating func message(field: Int, _ payload: [UInt8]) {
        key(field: field, wireType: 2)
        varint(UInt64(payload.count))
        bytes += payload
    }

    private mutating func littleEndian<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { bytes += $0 }
    }
}

// MARK: - TFRecord framing

/// A TFRecord: `uint64 length`, `uint32 masked_crc32c(length bytes)`, the data, `uint32 masked_crc32c(data)`,
/// all little-endian.
enum TFRecord {
    static func frame(_ data: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(data.count + 16)
        withUnsafeBytes(of: UInt64(data.count).littleEndian) { out += $0 }
        let lengthCRC = CRC32C.masked(CRC32C.checksum(out))
        withUnsafeBytes(of: lengthCRC.littleEndian) { out += $0 }
        out += data
        withUnsafeBytes(of: CRC32C.masked(CRC32C.checksum(data)).littleEndian) { out += $0 }
        return out
    }
}

/// CRC-32C (Castagnoli): reflected polynomial 0x82F63B78, initial value and final xor 0xFFFFFFFF, one table
/// lookup per byte. `checksum("123456789") == 0xE3069283`.
enum CRC32C {
    static let table: [UInt32] = (0..<256).map { index in
        var crc = UInt32(index)
        for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
        return crc
    }

    static func checksum<C: Collection>(_ bytes: C) -> UInt32 where C.Element == UInt8 {
        table.withUnsafeBufferPointer { table in
            var crc: UInt32 = 0xFFFF_FFFF
            for byte in bytes {
                crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8)
            }
            return crc ^ 0xFFFF_FFFF
        }
    }

    /// TFRecord's mask, which keeps a CRC of data that itself holds CRCs from being trivially related to them.
    static func masked(_ crc: UInt32) -> UInt32 {
        ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8
    }
}
