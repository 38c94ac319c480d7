import Foundation

/// One fine-tuning example: a text and its class id.
public struct LabeledExample: Equatable, Sendable {
    public var text: String
    public var label: Int32

    public init(text: String, label: Int32) {
        self.text = text
        self.label = label
    }
}

/// One row of a file read for inference (`LabeledDataset.loadTexts`): its text, its label as written when
/// the row has one, and the 1-based line where the row starts.
public struct TextRecord: Equatable, Sendable {
    public var text: String
    public var label: String?
    public var line: Int

    public init(text: String, label: String?, line: Int) {
        self.text = text
        self.label = label
        self.line = line
    }
}

/// The layout of a labeled file.
public enum LabeledFileFormat: String, Codable, Sendable, CaseIterable {
    /// Tab-separated, with RFC 4180 quoting (see `DelimitedRecords`).
    case tsv
    /// Comma-separated, RFC 4180.
    case csv
    /// One JSON object per line.
    case jsonl

    /// The format named by a file's extension (`.tsv`, `.csv`, `.jsonl` or `.json`).
    /// - Throws: `DataError.invalidArgument` naming the file for any other extension.
    public init(inferredFrom url: URL) throws {
        switch url.pathExtension.lowercased() {
        case "tsv": self = .tsv
        case "csv": self = .csv
        case "jsonl", "json": self = .jsonl
        default:
            throw DataError.invalidArgument(
                "\(url.path): cannot tell the format from the extension '\(url.pathExtension)': expected tsv, csv or jsonl")
        }
    }
}

/// Which field of a row holds a value: a 0-based column index or a header name (TSV, CSV), or a key (JSONL).
public enum FieldSelector: Hashable, Sendable, Codable, CustomStringConvertible {
    case index(Int)
    case name(String)

    public var description: String {
        switch self {
        case .index(let index): return "column \(index)"
        case .name(let name): return "'\(name)'"
        }
    }
}

/// What to do with bytes that are not valid UTF-8.
public enum InvalidUTF8Handling: String, Codable, Sendable, CaseIterable {
    /// Throw `DataError.invalidUTF8` naming the file and line.
    case error
    /// Read them as U+FFFD, the replacement character.
    case replace
}

/// How to read labeled files.
public struct LabeledFileOptions: Sendable {
    public var format: LabeledFileFormat
    public var textField: FieldSelector
    public var labelField: FieldSelector
    /// Whether the first record of a TSV or CSV file names the columns (ignored for JSONL).
    public var hasHeader: Bool
    public var invalidUTF8: InvalidUTF8Handling

    /// Fields default to columns 0 (text) and 1 (label) for TSV and CSV, keys `text` and `label` for JSONL.
    public init(
        format: LabeledFileFormat, textField: FieldSelector? = nil, labelField: FieldSelector? = nil,
        hasHeader: Bool = false, invalidUTF8: InvalidUTF8Handling = .error
    ) {
        self.format = format
        self.textField = textField ?? (format == .jsonl ? .name("text") : .index(0))
        self.labelField = labelField ?? (format == .jsonl ? .name("label") : .index(1))
        self.hasHeader = hasHeader
        self.invalidUTF8 = invalidUTF8
    }
}

/// Label names and their ids: id i is `names[i]`. Saved with a fine-tuned checkpoint so that evaluation and
/// inference map names exactly as training did.
public struct LabelMap: Codable, Equatable, Sendable {
    public let names: [String]

    /// Names in the given order; id i is `names[i]`.
    public init(names: [String]) { self.names = names }

    /// The distinct names, sorted: numerically when every name is an integer (so "2" < "10"), otherwise by
    /// Unicode scalar values. Sorting makes ids independent of the order rows happen to be in, so the same
    /// labels always get the same ids. Names with the same number ("1" and "01") are ordered by their scalars,
    /// so the order is total and never depends on a `Set`'s iteration order (which differs between processes).
    public static func sorted<Names: Sequence>(_ names: Names) -> LabelMap where Names.Element == String {
        let distinct = Set(names).sorted { $0.unicodeScalars.lexicographicallyPrecedes($1.unicodeScalars) }
        let numbered = distinct.compactMap { name in Int(name).map { (number: $0, name: name) } }
        if numbered.count == distinct.count {
            // A stable sort of the scalar-ordered names: equal numbers keep their scalar order.
            return LabelMap(names: numbered.enumerated().sorted {
                ($0.element.number, $0.offset) < ($1.element.number, $1.offset)
            }.map(\.element.name))
        }
        return LabelMap(names: distinct)
    }

    /// The id of `name`, or nil if it is not a known label.
    public func id(of name: String) -> Int32? {
        names.firstIndex(of: name).map { Int32($0) }
    }
}

/// Labeled examples read from TSV, CSV or JSONL files, and the label map that gave their ids.
///
/// Files are read whole into memory (fine-tuning sets are small); texts are kept exactly as written, spaces
/// included.
public struct LabeledDataset: Sendable {
    public var examples: [LabeledExample]
    public var labels: LabelMap

    public init(examples: [LabeledExample], labels: LabelMap) {
        self.examples = examples
        self.labels = labels
    }

    /// Reads and labels every row of `files`, in order.
    /// - Parameters:
    ///   - labels: the map to use, such as training's for dev and test sets; nil builds `LabelMap.sorted` from
    ///     the labels found.
    /// - Throws: `DataError` naming the file and the row's line: missing file, missing field, bad quoting,
    ///   invalid UTF-8 (unless replaced), invalid JSON, or a label not in `labels`.
    public static func load(files: [URL], options: LabeledFileOptions, labels: LabelMap? = nil) throws -> LabeledDataset {
        var rows: [Row] = []
        for file in files { rows += try readRows(file, options: options, labelRequired: true) }
        // Every row has a label: readRows throws for a missing one when it is required.
        let map = labels ?? LabelMap.sorted(rows.map { $0.label! })
        var examples: [LabeledExample] = []
        examples.reserveCapacity(rows.count)
        for row in rows {
            let label = row.label!
            guard let id = map.id(of: label) else {
                throw DataError.unknownLabel(path: row.path, line: row.line, label: label, known: map.names)
            }
            examples.append(LabeledExample(text: row.text, label: id))
        }
        return LabeledDataset(examples: examples, labels: map)
    }

    /// One file's worth; see `load(files:options:labels:)`.
    public static func load(file: URL, options: LabeledFileOptions, labels: LabelMap? = nil) throws -> LabeledDataset {
        try load(files: [file], options: options, labels: labels)
    }

    /// Reads the texts of `file` for inference, where labels are optional: each record carries its label as
    /// written when the row has the label field (TSV, CSV: the column exists in that row, or the header names
    /// it; JSONL: the key is present) and nil otherwise, so a one-column TSV or a JSONL file with only `text`
    /// reads fine. Labels are not mapped to ids (any string is kept).
    /// - Throws: `DataError` naming the file and the row's line: missing file, missing text field, bad quoting,
    ///   invalid UTF-8 (unless replaced), invalid JSON, a label that is neither a string nor an integer.
    public static func loadTexts(file: URL, options: LabeledFileOptions) throws -> [TextRecord] {
        try readRows(file, options: options, labelRequired: false).map {
            TextRecord(text: $0.text, label: $0.label, line: $0.line)
        }
    }

    // MARK: - Reading rows

    /// A row before its label has an id; the label is nil only when it was not required and the row lacks it.
    struct Row {
        var text: String
        var label: String?
        var path: String
        var line: Int
    }

    /// - Parameter labelRequired: true for training and evaluation (a row without the label field is an
    ///   error); false for inference (the label is read where the row has it).
    static func readRows(_ url: URL, options: LabeledFileOptions, labelRequired: Bool) throws -> [Row] {
        let path = url.path
        guard FileManager.default.fileExists(atPath: path) else { throw DataError.fileNotFound(path: path) }
        let bytes: [UInt8]
        do {
            bytes = try [UInt8](Data(contentsOf: url))
        } catch {
            throw DataError.io(path: path, operation: "read", errno: errno)
        }
        switch options.format {
        case .tsv:
            return try readDelimited(
                bytes, delimiter: UInt8(ascii: "\t"), path: path, options: options, labelRequired: labelRequired)
        case .csv:
            return try readDelimited(
                bytes, delimiter: UInt8(ascii: ","), path: path, options: options, labelRequired: labelRequired)
        case .jsonl: return try readJSONLines(bytes, path: path, options: options, labelRequired: labelRequired)
        }
    }

    static func decode(_ bytes: [UInt8], path: String, line: Int, handling: InvalidUTF8Handling) throws -> String {
        if let text = String(validating: bytes, as: UTF8.self) { return text }
        guard handling == .replace else { throw DataError.invalidUTF8(path: path, line: line) }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func readDelimited(
        _ bytes: [UInt8], delimiter: UInt8, path: String, options: LabeledFileOptions, labelRequired: Bool
    ) throws -> [Row] {
        var records = DelimitedRecords(bytes: bytes, delimiter: delimiter, path: path)
        var header: [String]? = nil
        if options.hasHeader, let first = try records.next() {
            header = try first.fields.map { try decode($0, path: path, line: first.line, handling: options.invalidUTF8) }
        }
        /// The column of `selector`; nil for an optional field the header does not name.
        func column(_ selector: FieldSelector, required: Bool) throws -> Int? {
            switch selector {
            case .index(let index):
                guard index >= 0 else { throw DataError.invalidArgument("\(path): column index \(index) is negative") }
                return index
            case .name(let name):
                guard let header else {
                    throw DataError.invalidArgument("\(path): field '\(name)' is named, but the file is read without a header")
                }
                guard let index = header.firstIndex(of: name) else {
                    if !required { return nil }
                    throw DataError.malformedRow(
                        path: path, line: 1, reason: "header has no column '\(name)'; its columns are \(header.joined(separator: ", "))")
                }
                return index
            }
        }
        let textColumn = try column(options.textField, required: true)!
        let labelColumn = try column(options.labelField, required: labelRequired)
        let needed = labelRequired ? max(textColumn, labelColumn!) + 1 : textColumn + 1
        var rows: [Row] = []
        while let record = try records.next() {
            guard record.fields.count >= needed else {
                let missing = record.fields.count <= textColumn ? options.textField : options.labelField
                throw DataError.malformedRow(
                    path: path, line: record.line,
                    reason: "missing field \(missing): expected at least \(needed) fields, found \(record.fields.count)")
            }
            let text = try decode(record.fields[textColumn], path: path, line: record.line, handling: options.invalidUTF8)
            var label: String? = nil
            if let labelColumn, labelColumn < record.fields.count {
                label = try decode(record.fields[labelColumn], path: path, line: record.line, handling: options.invalidUTF8)
            }
            rows.append(Row(text: text, label: label, path: path, line: record.line))
        }
        return rows
    }

    private static func readJSONLines(
        _ bytes: [UInt8], path: String, options: LabeledFileOptions, labelRequired: Bool
    ) throws -> [Row] {
        func key(_ selector: FieldSelector) throws -> String {
            guard case .name(let key) = selector else {
                throw DataError.invalidArgument("\(path): JSONL fields are chosen by key, not by \(selector)")
            }
            return key
        }
        let textKey = try key(options.textField)
        let labelKey = try key(options.labelField)
        var rows: [Row] = []
        var line = 0
        for lineBytes in bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            line += 1
            let text = try decode(Array(lineBytes), path: path, line: line, handling: options.invalidUTF8)
            if text.allSatisfy(\.isWhitespace) { continue }
            let object: Any
            do {
                object = try JSONSerialization.jsonObject(with: Data(text.utf8))
            } catch {
                throw DataError.malformedRow(path: path, line: line, reason: "not valid JSON")
            }
            guard let fields = object as? [String: Any] else {
                throw DataError.malformedRow(path: path, line: line, reason: "expected a JSON object")
            }
            guard let textValue = fields[textKey] else {
                throw DataError.malformedRow(path: path, line: line, reason: "missing field '\(textKey)'")
            }
            guard let rowText = textValue as? String else {
                throw DataError.malformedRow(path: path, line: line, reason: "field '\(textKey)' is not a string")
            }
            guard let labelValue = fields[labelKey] else {
                if !labelRequired {
                    rows.append(Row(text: rowText, label: nil, path: path, line: line))
                    continue
                }
                throw DataError.malformedRow(path: path, line: line, reason: "missing field '\(labelKey)'")
            }
            let label: String
            if let string = labelValue as? String {
                label = string
            } else if let number = labelValue as? NSNumber, let integer = Int(exactly: number.doubleValue) {
                label = String(integer)
            } else {
                throw DataError.malformedRow(path: path, line: line, reason: "field '\(labelKey)' is neither a string nor an integer")
            }
            rows.append(Row(text: rowText, label: label, path: path, line: line))
        }
        return rows
    }
}
