import Foundation
import Testing

@testable import LockstepLogging

@Suite struct ProgressBarTests {
    @Test func fullLine() {
        // 120 of 5000 steps in 75 s: 0.625 s a step, 4880 left -> 3050 s = 50m50s.
        let line = ProgressLine.format(
            step: 120, totalSteps: 5000, loss: 2.345_123, learningRate: 5.99e-4, gradNorm: 0.8123,
            tokensPerSecond: 1234.4, elapsed: 75)
        #expect(
            line
                == "step  120/5000 [--------------------]   2.4%  loss 2.3451  lr 5.99e-04  |g| 0.812  1,234 tok/s  ETA 50m50s")
        let half = ProgressLine.format(
            step: 2500, totalSteps: 5000, loss: 10, learningRate: 1e-3, gradNorm: 12.5, tokensPerSecond: 1_234_567.8,
            elapsed: 3725)
        #expect(
            half
                == "step 2500/5000 [##########----------]  50.0%  loss 10.0000  lr 1.00e-03  |g| 12.500  1,234,568 tok/s  ETA 1h02m")
    }

    @Test func firstAndLastSteps() {
        let start = ProgressLine.format(
            step: 0, totalSteps: 50, loss: .nan, learningRate: 0, gradNorm: .infinity, tokensPerSecond: .nan,
            elapsed: 0)
        #expect(start == "step  0/50 [--------------------]   0.0%  loss nan  lr 0.00e+00  |g| inf  -- tok/s  ETA --")
        let end = ProgressLine.format(
            step: 50, totalSteps: 50, loss: 1.5, learningRate: 6e-5, gradNorm: 0.25, tokensPerSecond: 999.6,
            elapsed: 100)
        #expect(end == "step 50/50 [####################] 100.0%  loss 1.5000  lr 6.00e-05  |g| 0.250  1,000 tok/s  ETA 0s")
    }

    @Test func durations() {
        #expect(ProgressLine.duration(0) == "0s")
        #expect(ProgressLine.duration(0.4) == "0s")
        #expect(ProgressLine.duration(42.4) == "42s")
        #expect(ProgressLine.duration(59.6) == "1m00s")
        #expect(ProgressLine.duration(187) == "3m07s")
        #expect(ProgressLine.duration(3599) == "59m59s")
        #expect(ProgressLine.duration(3600) == "1h00m")
        #expect(ProgressLine.duration(3720) == "1h02m")
        #expect(ProgressLine.duration(30 * 3600 + 59) == "30h00m")
        #expect(ProgressLine.duration(-1) == "--")
        #expect(ProgressLine.duration(.nan) == "--")
        #expect(ProgressLine.duration(.infinity) == "--")
    }

    @Test func barsAndThousands() {
        #expect(ProgressLine.bar(fraction: 0, width: 10) == "----------")
        #expect(ProgressLine.bar(fraction: 0.399, width: 10) == "###-------")
        #expect(ProgressLine.bar(fraction: 0.4, width: 10) == "####------")
        #expect(ProgressLine.bar(fraction: 1.5, width: 4) == "####")
        #expect(ProgressLine.bar(fraction: .nan, width: 4) == "----")
        #expect(ProgressLine.groupedThousands(0) == "0")
        #expect(ProgressLine.groupedThousands(999) == "999")
        #expect(ProgressLine.groupedThousands(1000) == "1,000")
        #expect(ProgressLine.groupedThousands(123_456) == "123,456")
        #expect(ProgressLine.groupedThousands(-1_234_567) == "-1,234,567")
        #expect(ProgressLine.groupedThousands(.infinity) == "--")
    }

    /// What a reporter wrote to a temporary file.
    func reported(isTerminal: Bool, every: Int, _ body: (ProgressReporter) -> Void) throws -> String {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("console.txt")
        #expect(FileManager.default.createFile(atPath: url.path, contents: nil))
        let handle = try FileHandle(forWritingTo: url)
        let reporter = ProgressReporter(output: handle, isTerminal: isTerminal, plainLineEvery: every)
        body(reporter)
        try handle.close()
        return try String(contentsOf: url, encoding: .utf8)
    }

    func line(_ step: Int) -> String {
        ProgressLine.format(
            step: step, totalSteps: 25, loss: 1, learningRate: 1e-3, gradNorm: 1, tokensPerSecond: 100,
            elapsed: Double(step))
    }

    func run(_ reporter: ProgressReporter, steps: ClosedRange<Int>) {
        for step in steps {
            reporter.update(
                step: step, totalSteps: 25, loss: 1, learningRate: 1e-3, gradNorm: 1, tokensPerSecond: 100,
                elapsed: Double(step))
        }
    }

    @Test func plainLinesEveryNSteps() throws {
        let text = try reported(isTerminal: false, every: 10) { reporter in
            run(reporter, steps: 1...12)
            reporter.message("eval loss 1.2")
            run(reporter, steps: 13...25)
            reporter.finish()
        }
        #expect(text == [line(1), line(10), "eval loss 1.2", line(20), line(25)].map { $0 + "\n" }.joined())
        #expect(!text.contains("\r"))
    }

    @Test func terminalRedrawsInPlace() throws {
        let text = try reported(isTerminal: true, every: 10) { reporter in
            run(reporter, steps: 1...2)
            reporter.message("eval loss 1.2")
            run(reporter, steps: 3...3)
            reporter.finish()
            reporter.finish()  // a second finish adds nothing
        }
        let erase = "\u{1B}[K"
        #expect(
            text
                == "\r" + line(1) + erase + "\r" + line(2) + erase + "\r" + erase + "eval loss 1.2\n"
                + "\r" + line(3) + erase + "\n")
    }

    @Test func detectsThatAFileIsNotATerminal() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("x")
        #expect(FileManager.default.createFile(atPath: url.path, contents: nil))
        let handle = try FileHandle(forWritingTo: url)
        defer { try? handle.close() }
        #expect(ProgressReporter(output: handle).isTerminal == false)
    }
}
