import CYaml
import Foundation
import Yams

/// A configuration problem, always naming where it is: the file, the line when known, and the dotted key.
public struct ConfigError: Error, CustomStringConvertible, Equatable {
    public var file: String
    public var line: Int?
    public var key: String
    public var message: String

    public init(file: String, line: Int? = nil, key: String, message: String) {
        self.file = file
        self.line = line
        self.key = key
        self.message = message
    }

    public var description: String {
        let location = line.map { "\(file):\($0)" } ?? file
        return key.isEmpty ? "\(location): \(message)" : "\(location): \(key): \(message)"
    }
}

/// A parsed YAML document reduced to what a configuration needs: mappings of scalars, with the line each
/// came from, so that every error can point at the user's text.
indirect enum ConfigNode {
    case mapping([(key: String, value: ConfigNode)], line: Int?)
    case scalar(String, isNull: Bool, line: Int?)
    case sequence([ConfigNode], line: Int?)

    var line: Int? {
        switch self {
        case .mapping(_, let line), .scalar(_, _, let line), .sequence(_, let line): return line
        }
    }

    init(yaml node: Node, file: String, path: String) throws {
        switch node {
        case .scalar(let scalar):
            let isNull = scalar.style == .plain && ["", "~", "null", "Null", "NULL"].contains(scalar.string)
            self = .scalar(scalar.string, isNull: isNull, line: scalar.mark?.line)
        case .sequence(let sequence):
            self = .sequence(
                try sequence.enumerated().map { try ConfigNode(yaml: $1, file: file, path: "\(path)[\($0)]") },
                line: sequence.mark?.line)
        case .mapping(let mapping):
            var pairs: [(key: String, value: ConfigNode)] = []
            for (keyNode, valueNode) in mapping {
                guard let key = keyNode.string else {
                    throw ConfigError(file: file, line: keyNode.mark?.line, key: path, message: "keys must be plain strings")
                }
                let childPath = path.isEmpty ? key : "\(path).\(key)"
                if pairs.contains(where: { $0.key == key }) {
                    throw ConfigError(file: file, line: keyNode.mark?.line, key: childPath, message: "key appears twice")
                }
                pairs.append((key, try ConfigNode(yaml: valueNode, file: file, path: childPath)))
            }
            self = .mapping(pairs, line: mapping.mark?.line)
        }
    }

    /// Returns a copy with `value` at the dotted `path`, creating mappings on the way.
    func setting(_ value: ConfigNode, at path: ArraySlice<String>) -> ConfigNode {
        guard let head = path.first else { return value }
        var pairs: [(key: String, value: ConfigNode)] = []
        var line: Int? = nil
        if case .mapping(let existing, let existingLine) = self {
            pairs = existing
            line = existingLine
        }
        if let index = pairs.firstIndex(where: { $0.key == head }) {
            pairs[index].value = pairs[index].value.setting(value, at: path.dropFirst())
        } else {
            pairs.append((head, ConfigNode.mapping([], line: nil).setting(value, at: path.dropFirst())))
        }
        return .mapping(pairs, line: line)
    }
}

/// Reads one mapping of a configuration with typed accessors, remembering which keys were read so that
/// `finish()` can reject the rest: a misspelt key is an error, never silently ignored.
final class ConfigSection {
    let file: String
    let path: String
    private let pairs: [(key: String, value: ConfigNode)]
    private let line: Int?
    private var readKeys: Set<String> = []
    private var children: [ConfigSection] = []

    init(node: ConfigNode?, file: String, path: String) throws {
        self.file = file
        self.path = path
        switch node {
        case .none, .scalar(_, true, _):
            pairs = []
            line = node?.line
        case .mapping(let pairs, let line):
            self.pairs = pairs
            self.line = line
        case .some(let other):
            throw ConfigError(file: file, line: other.line, key: path, message: "expected a mapping of keys to values")
        }
    }

    /// Parses YAML text; `overrides` are `dotted.key=value` pairs applied on top (values parsed as YAML).
    static func root(yaml text: String, file: String, overrides: [String] = []) throws -> ConfigSection {
        var node: ConfigNode
        try checkNesting(text, file: file)
        do {
            if let document = try Yams.compose(yaml: text) {
                node = try ConfigNode(yaml: document, file: file, path: "")
            } else {
                node = .mapping([], line: nil)
            }
        } catch let error as ConfigError {
            throw error
        } catch let error as YamlError {
            throw ConfigError(file: file, line: nil, key: "", message: "not valid YAML: \(error)")
        }
        for override in overrides {
            guard let equals = override.firstIndex(of: "="), equals != override.startIndex else {
                throw ConfigError(
                    file: "--set", key: override, message: "expected key=value, for example training.max_steps=100")
            }
            let key = String(override[..<equals])
            let valueText = String(override[override.index(after: equals)...])
            let components = key.split(separator: ".", omittingEmptySubsequences: false)
            guard components.count <= maximumDepth, !components.contains(where: \.isEmpty) else {
                throw ConfigError(
                    file: "--set", key: key,
                    message: "expected a key of at most \(maximumDepth) dot-separated names, for example training.max_steps")
            }
            try checkNesting(valueText, file: "--set")
            let value: ConfigNode
            do {
                value = try Yams.compose(yaml: valueText).map { try ConfigNode(yaml: $0, file: "--set", path: key) }
                    ?? .scalar("", isNull: true, line: nil)
            } catch {
                throw ConfigError(file: "--set", key: key, message: "value '\(valueText)' is not valid YAML")
            }
            node = node.setting(value, at: ArraySlice(key.split(separator: ".").map(String.init)))
        }
        return try ConfigSection(node: node, file: file, path: "")
    }

    /// Deepest nesting of mappings and sequences a config may have: real configs need 3, and composing a
    /// deeper document recursively could exhaust the stack.
    static let maximumDepth = 32

    /// Refuses YAML nested deeper than `maximumDepth`, counted on libyaml's event stream (iteratively, before
    /// anything recursive sees the document). Syntax errors are left to the parser that follows.
    static func checkNesting(_ text: String, file: String) throws {
        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) == 1 else { return }
        defer { yaml_parser_delete(&parser) }
        let bytes = Array(text.utf8)
        try bytes.withUnsafeBufferPointer { buffer in
            yaml_parser_set_input_string(&parser, buffer.baseAddress, buffer.count)
            var depth = 0
            while true {
                var event = yaml_event_t()
                guard yaml_parser_parse(&parser, &event) == 1 else { return }
                defer { yaml_event_delete(&event) }
                switch event.type {
                case YAML_MAPPING_START_EVENT, YAML_SEQUENCE_START_EVENT:
                    depth += 1
                    if depth > maximumDepth {
                        throw ConfigError(
                            file: file, line: Int(event.start_mark.line) + 1, key: "",
                            message: "nested more than \(maximumDepth) levels deep; a config needs only a few")
                    }
                case YAML_MAPPING_END_EVENT, YAML_SEQUENCE_END_EVENT: depth -= 1
                case YAML_STREAM_END_EVENT: return
                default: break
                }
            }
        }
    }

    private func fullKey(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    private func node(_ key: String) -> ConfigNode? {
        readKeys.insert(key)
        guard let node = pairs.first(where: { $0.key == key })?.value else { return nil }
        if case .scalar(_, true, _) = node { return nil }
        return node
    }

    private func error(_ key: String, _ node: ConfigNode?, _ message: String) -> ConfigError {
        ConfigError(file: file, line: node?.line ?? line, key: fullKey(key), message: message)
    }

    private func scalar(_ key: String, expected: String) throws -> (text: String, node: ConfigNode)? {
        guard let node = node(key) else { return nil }
        guard case .scalar(let text, _, _) = node else { throw error(key, node, "expected \(expected)") }
        return (text, node)
    }

    func section(_ key: String) throws -> ConfigSection {
        let child = try ConfigSection(node: node(key), file: file, path: fullKey(key))
        children.append(child)
        return child
    }

    func has(_ key: String) -> Bool { pairs.contains { $0.key == key } }

    func optionalString(_ key: String) throws -> String? {
        try scalar(key, expected: "a string")?.text
    }

    func string(_ key: String, default value: String) throws -> String {
        try optionalString(key) ?? value
    }

    func optionalInt(_ key: String, minimum: Int? = nil, maximum: Int? = nil) throws -> Int? {
        guard let (text, node) = try scalar(key, expected: "an integer") else { return nil }
        guard let value = Int(text.replacingOccurrences(of: "_", with: "")) else {
            throw error(key, node, "expected an integer, found '\(text)'")
        }
        if let minimum, value < minimum { throw error(key, node, "expected an integer ≥ \(minimum), found \(value)") }
        if let maximum, value > maximum { throw error(key, node, "expected an integer ≤ \(maximum), found \(value)") }
        return value
    }

    func int(_ key: String, default value: Int, minimum: Int? = nil, maximum: Int? = nil) throws -> Int {
        try optionalInt(key, minimum: minimum, maximum: maximum) ?? value
    }

    /// A finite number ≥ `minimum`; with `below`, also < `below` (a half-open range such as [0, 1)); with
    /// `positive`, also > 0.
    func optionalDouble(_ key: String, minimum: Double? = nil, below: Double? = nil, positive: Bool = false) throws -> Double? {
        guard let (text, node) = try scalar(key, expected: "a number") else { return nil }
        guard let value = Double(text.replacingOccurrences(of: "_", with: "")), value.isFinite else {
            throw error(key, node, "expected a finite number, found '\(text)'")
        }
        if let minimum, let below, !(value >= minimum && value < below) {
            throw error(key, node, "expected a number in [\(minimum), \(below)), found \(value)")
        }
        if let minimum, value < minimum { throw error(key, node, "expected a number ≥ \(minimum), found \(value)") }
        if positive && !(value > 0) { throw error(key, node, "expected a number > 0, found \(value)") }
        return value
    }

    func double(
        _ key: String, default value: Double, minimum: Double? = nil, below: Double? = nil, positive: Bool = false
    ) throws -> Double {
        try optionalDouble(key, minimum: minimum, below: below, positive: positive) ?? value
    }

    func bool(_ key: String, default value: Bool) throws -> Bool {
        guard let (text, node) = try scalar(key, expected: "true or false") else { return value }
        switch text.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: throw error(key, node, "expected true or false, found '\(text)'")
        }
    }

    func choice<T: RawRepresentable & CaseIterable>(_ key: String, default value: T) throws -> T
    where T.RawValue == String {
        guard let (text, node) = try scalar(key, expected: "a string") else { return value }
        guard let choice = T(rawValue: text) else {
            let allowed = T.allCases.map(\.rawValue).joined(separator: ", ")
            throw error(key, node, "expected one of \(allowed), found '\(text)'")
        }
        return choice
    }

    func optionalStrings(_ key: String) throws -> [String]? {
        guard let node = node(key) else { return nil }
        switch node {
        case .scalar(let text, _, _): return [text]
        case .sequence(let items, _):
            return try items.map { item in
                guard case .scalar(let text, _, _) = item else { throw error(key, item, "expected a list of strings") }
                return text
            }
        case .mapping: throw error(key, node, "expected a string or a list of strings")
        }
    }

    /// An error about `key`'s value that only makes sense in context (e.g. a value too large for another).
    func invalid(_ key: String, _ message: String) -> ConfigError {
        error(key, pairs.first(where: { $0.key == key })?.value, message)
    }

    /// Rejects every key of this section and its read sub-sections that no accessor asked for.
    func finish() throws {
        for (key, value) in pairs where !readKeys.contains(key) {
            let known = readKeys.sorted().joined(separator: ", ")
            throw error(key, value, "unknown key (known keys here: \(known))")
        }
        for child in children { try child.finish() }
    }
}
