import Foundation
import LockstepFormats

/// One value in a metrics record: what a flat JSON object can hold.
///
/// Doubles are written in Swift's shortest form that reads back to the same bits (`0.1`, `1e-05`, `3.0`), Ints
/// as integers. JSON has no NaN or infinity, so a non-finite Double is written as `null` (a skipped update's
/// loss, say); the record should carry another field that says why.
public enum MetricValue: Equatable, Sendable {
    case int(Int)
    case double(Double)
    case string(String)
    case bool(Bool)
    case null

    /// The JSON text of this value.
    public var jsonText: String {
        switch self {
        case .int(let value): return String(value)
        case .double(let value): return value.isFinite ? value.description : "null"
        case .string(let value): return JSONText.quoted(value)
        case .bool(let value): return value ? "true" : "false"
        case .null: return "null"
        }
    }

    /// A value from `JSONSerialization`: its numbers are `NSNumber`s whose type says whether the text had a
    /// fraction or exponent (`d`), was a bool (`c`) or an integer. Nil for arrays and objects.
    init?(json value: Any) {
        switch value {
        case is NSNull: self = .null
        case let text as String: self = .string(text)
        case let number as NSNumber:
            switch String(cString: number.objCType) {
            case "c", "B": self = .bool(number.boolValue)
            case "d", "f": self = .double(number.doubleValue)
            default: self = .int(number.intValue)
            }
        default: return nil
        }
    }

    /// The value as a Double when it is a number (ints widened), else nil.
    public var doubleValue: Double? {
        switch self {
        case .int(let value): return Double(value)
        case .double(let value): return value
        case .string, .bool, .null: return nil
        }
    }

}

extension MetricValue: ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral, ExpressibleByStringLiteral,
    ExpressibleByBooleanLiteral
{
    public init(integerLiteral value: Int) { self = .int(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(stringLiteral value: String) { self = .string(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
}

/// A problem opening, writing or reading a metrics log, naming the file (and line for reads).
public struct MetricsLogError: Error, Equatable, CustomStringConvertible {
    public var path: String
    /// 1-based line number for a malformed line, nil otherwise.
    public var line: Int?
    public var message: String

    public var description: String {
        if let line { return "\(path):\(line): \(message)" }
        return "\(path): \(message)"
    }
}

/// The JSONL metrics file: one flat JSON object per line, keys sorted, written by the coordinator.
///
/// The trainer's records follow this shape (other keys may be added; readers should ignore unknown ones):
/// - `{"kind":"train","step":S,"loss":..,"lr":..,"grad_norm":..,"tokens_per_second":..,"time":..}` once per
///   step, `time` being seconds since the run started;
/// - `{"kind":"eval","step":S,"loss":..,"perplexity":..,"time":..}` once per evaluation, plus `accuracy` for
///   classification fine-tuning.
/// `scripts/plot_metrics.py` draws these.
///
/// Each record goes to the file in one `write` as soon as it is written, so a crash loses at most the record
/// being written and can leave at most one partial last line. Opening with `append: true` removes such a
/// partial line (truncating the file after its last newline) before writing: the fragment is an incomplete
/// record no reader could parse, and appending to it would glue it onto the next record.
/// `droppedTailBytes` says how many bytes went, so the caller can report it.
///
/// Not thread-safe: one owner (the coordinator) writes.
public final class MetricsLog {
    public let url: URL
    /// Bytes of a partial last line removed when opening for append (0 if the file ended cleanly).
    public private(set) var droppedTailBytes: Int = 0
    private var handle: FileHandle?

    /// Opens `url` for writing, creating it (and its directory) if needed.
    /// - Parameter append: true to keep existing records (resuming a run), false to start an empty file.
    /// - Throws: `MetricsLogError` naming the file when it cannot be created or opened.
    public init(url: URL, append: Bool) throws {
        self.url = url
        let fileManager = FileManager.default
        do {
            try fileManager.createDirectory(
                at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        } catch {
            throw MetricsLogError(path: url.path, line: nil, message: "cannot create its directory: \(error)")
        }
        if !append || !fileManager.fileExists(atPath: url.path) {
            guard fileManager.createFile(atPath: url.path, contents: nil) else {
                throw MetricsLogError(path: url.path, line: nil, message: "cannot create the file")
            }
        }
        do {
            let handle = try FileHandle(forUpdating: url)
            self.handle = handle
            droppedTailBytes = try Self.dropPartialLastLine(handle)
            try handle.seekToEnd()
        } catch let error as MetricsLogError {
            throw error
        } catch {
            throw MetricsLogError(path: url.path, line: nil, message: "cannot open for writing: \(error)")
        }
    }

    deinit {
        try? handle?.close()
    }

    /// Appends `record` as one line.
    /// - Throws: `MetricsLogError` if the write fails (disk full) or the log was closed.
    public func write(_ record: [String: MetricValue]) throws {
        guard let handle else {
            throw MetricsLogError(path: url.path, line: nil, message: "write after close")
        }
        let line = Self.encode(record) + "\n"
        do {
            try handle.write(contentsOf: Data(line.utf8))
        } catch {
            throw MetricsLogError(path: url.path, line: nil, message: "write failed: \(error)")
        }
    }

    /// Forces written records to disk (fsync); records are already visible to readers without it.
    public func flush() throws {
        do {
            try handle?.synchronize()
        } catch {
            throw MetricsLogError(path: url.path, line: nil, message: "fsync failed: \(error)")
        }
    }

    /// Flushes and closes the file; later writes throw.
    public func close() throws {
        guard let handle else { return }
        try flush()
        self.handle = nil
        try handle.close()
    }

    // MARK: - Text form

    /// One record as a JSON object with keys in sorted order, without the newline.
    public static func encode(_ record: [String: MetricValue]) -> String {
        let fields = record.sorted { $0.key < $1.key }.map { JSONText.quoted($0.key) + ":" + $0.value.jsonText }
        return "{" + fields.joined(separator: ",") + "}"
    }

    /// Reads every record of a metrics file. A last line without its newline that does not parse (a crash's
    /// partial write) is skipped; any other malformed line throws.
    /// - Throws: `MetricsLogError` naming the file and 1-based line.
    public static func read(url: URL) throws -> [[String: MetricValue]] {
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            throw MetricsLogError(path: url.path, line: nil, message: "cannot read: \(error)")
        }
        let text = String(decoding: data, as: UTF8.self)
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        let endsCleanly = text.isEmpty || text.hasSuffix("\n")
        if lines.last == "" { lines.removeLast() }
        var records: [[String: MetricValue]] = []
        for (index, line) in lines.enumerated() where !line.allSatisfy(\.isWhitespace) {
            do {
                records.append(try parse(line: line))
            } catch let problem as MetricsLogError {
                if index == lines.count - 1 && !endsCleanly { break }
                throw MetricsLogError(path: url.path, line: index + 1, message: problem.message)
            }
        }
        return records
    }

    /// Parses one line holding a flat JSON object (string keys; string, number, bool or null values) with
    /// Foundation's JSON reader. Numbers written with a fraction or exponent become `.double`, others `.int`.
    /// - Throws: `MetricsLogError` (without path) saying what was wrong.
    public static func parse<S: StringProtocol>(line: S) throws -> [String: MetricValue] {
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: Data(line.utf8))
        } catch {
            throw MetricsLogError(path: "", line: nil, message: "not valid JSON (\(error.localizedDescription))")
        }
        guard let fields = object as? [String: Any] else {
            throw MetricsLogError(path: "", line: nil, message: "expected a JSON object, found \(type(of: object))")
        }
        // JSONSerialization tells integers from numbers with a fraction, but its doubles are not always the
        // nearest to the text; JSONDecoder's are, so the Doubles come from there (bit for bit what was written).
        let exact = (try? JSONDecoder().decode([String: ExactDouble].self, from: Data(line.utf8))) ?? [:]
        var record: [String: MetricValue] = [:]
        for (key, value) in fields {
            guard var metric = MetricValue(json: value) else {
                throw MetricsLogError(path: "", line: nil, message: "\(key): expected a string, number, bool or null, found \(value)")
            }
            if case .double = metric, let double = exact[key]?.value { metric = .double(double) }
            record[key] = metric
        }
        return record
    }

    // MARK: - Crash recovery

    /// Makes `url` hold each step once for a run resumed from the checkpoint of step `step`: removes every
    /// record whose `step` is greater (what the earlier run logged after that checkpoint, which the resumed run
    /// logs again) and a partial last line, keeping the other lines byte for byte. The file is replaced
    /// atomically; a missing file is left missing. Returns the number of records removed.
    /// - Throws: `MetricsLogError` naming the file (and line, for a malformed record).
    @discardableResult
    public static func dropRecords(after step: Int, in url: URL) throws -> Int {
        guard FileManager.default.fileExists(atPath: url.path) else { return 0 }
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            throw MetricsLogError(path: url.path, line: nil, message: "cannot read: \(error)")
        }
        var lines = data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        // The text after the last newline: empty, or a crash's partial record.
        let partial = lines.removeLast()
        var kept = Data()
        var dropped = 0
        for (index, line) in lines.enumerated() {
            if line.allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") || $0 == UInt8(ascii: "\r") }) {
                continue
            }
            let record: [String: MetricValue]
            do {
                record = try parse(line: String(decoding: line, as: UTF8.self))
            } catch let problem as MetricsLogError {
                throw MetricsLogError(path: url.path, line: index + 1, message: problem.message)
            }
            if case .int(let recordStep) = record["step"], recordStep > step {
                dropped += 1
                continue
            }
            kept.append(contentsOf: line)
            kept.append(UInt8(ascii: "\n"))
        }
        if dropped > 0 || !partial.isEmpty {
            do {
                try AtomicFile.write(kept, to: url)
            } catch {
                throw MetricsLogError(path: url.path, line: nil, message: "cannot rewrite: \(error)")
            }
        }
        return dropped
    }

    /// Truncates the file after its last newline if it does not end with one; returns the bytes removed.
    private static func dropPartialLastLine(_ handle: FileHandle) throws -> Int {
        let size = Int(try handle.seekToEnd())
        if size == 0 { return 0 }
        try handle.seek(toOffset: UInt64(size - 1))
        if handle.readData(ofLength: 1).first == UInt8(ascii: "\n") { return 0 }
        // Search backwards for the last newline, a chunk at a time.
        let chunk = 1 << 16
        var end = size
        var keep = 0
        search: while end > 0 {
            let start = max(0, end - chunk)
            try handle.seek(toOffset: UInt64(start))
            let bytes = [UInt8](handle.readData(ofLength: end - start))
            if let newline = bytes.lastIndex(of: UInt8(ascii: "\n")) {
                keep = start + newline + 1
                break search
            }
            end = start
        }
        try handle.truncate(atOffset: UInt64(keep))
        return size - keep
    }
}

/// A JSON value read as a Double where it is a number; nil for anything else.
private struct ExactDouble: Decodable {
    let value: Double?

    init(from decoder: Decoder) throws {
        value = try? decoder.singleValueContainer().decode(Double.self)
    }
}
