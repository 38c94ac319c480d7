import Foundation
import Testing

@testable import LockstepLogging

@Suite struct LoggersTests {
    @Test func unknownLevelIsRefusedNamingTheChoices() {
        do {
            try Loggers.bootstrap(level: "loud")
            Issue.record("expected an error")
        } catch let error as LogLevelError {
            #expect(error.description.contains("--log-level must be one of trace, debug, info"))
            #expect(error.description.contains("not 'loud'"))
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    @Test func knownLevelsAreAccepted() throws {
        for level in ["trace", "DEBUG", "info", "notice", "warning", "error", "critical"] {
            try Loggers.bootstrap(level: level)
        }
    }
}
