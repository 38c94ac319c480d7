import Foundation
import Logging

/// Diagnostics go through swift-log: one `Logger` per module, labelled `lockstep.<module>`, written to standard
/// error as `lockstep.<module>: <level>: <message>`. Results (a summary line, JSON) go to standard output.
///
/// The level is the user's: `--log-level` of the executables, else the environment variable
/// `LOCKSTEP_LOG_LEVEL` (`trace`, `debug`, `info`, `notice`, `warning`, `error`, `critical`), else `info`.
public enum Loggers {
    /// The environment variable that sets the level for every process of a run (mpirun passes it on with `-x`).
    public static let levelVariable = "LOCKSTEP_LOG_LEVEL"

    /// The logger of `module` (`distributed`, `training`, `cli`, ...).
    public static func logger(_ module: String) -> Logger {
        bootstrap()
        return Logger(label: "lockstep.\(module)")
    }

    /// Routes every logger to standard error at `level` (nil: `LOCKSTEP_LOG_LEVEL`, else `info`). The first call
    /// in a process decides (swift-log is set up once); an executable calls it first thing with its option.
    /// - Throws: `LogLevelError` when the level or the variable is not one of swift-log's levels.
    public static func bootstrap(level: String? = nil) throws {
        let text = level ?? ProcessInfo.processInfo.environment[levelVariable]
        var chosen = Logger.Level.info
        if let text {
            guard let parsed = Logger.Level(rawValue: text.lowercased()) else {
                throw LogLevelError(
                    description: "\(level == nil ? levelVariable : "--log-level") must be one of "
                        + Logger.Level.allCases.map(\.rawValue).joined(separator: ", ") + ", not '\(text)'")
            }
            chosen = parsed
        }
        let level = chosen
        state.withLock { done in
            guard !done else { return }
            done = true
            LoggingSystem.bootstrap { label in PlainLogHandler(label: label, level: level) }
        }
    }

    /// `bootstrap(level: nil)` that falls back to `info` when the variable is malformed (libraries cannot throw
    /// from a logger's creation; the executables validate the variable up front).
    static func bootstrap() {
        if (try? bootstrap(level: nil)) == nil { try? bootstrap(level: "info") }
    }

    private static let state = LockedFlag()
}

/// A log level that is not one of swift-log's.
public struct LogLevelError: Error, CustomStringConvertible {
    public var description: String
}

/// Whether swift-log has been set up in this process.
private final class LockedFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false

    func withLock(_ body: (inout Bool) -> Void) {
        lock.lock()
        defer { lock.unlock() }
        body(&value)
    }
}

/// One line per message on standard error: `lockstep.<module>: <level>: <message>`, metadata as `key=value`.
struct PlainLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]

    init(label: String, level: Logger.Level) {
        self.label = label
        logLevel = level
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let level = event.level, message = event.message
        let all = metadata.merging(event.metadata ?? [:]) { $1 }
        let details = all.isEmpty ? "" : " " + all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        FileHandle.standardError.write(Data("\(label): \(level): \(message)\(details)\n".utf8))
    }
}
