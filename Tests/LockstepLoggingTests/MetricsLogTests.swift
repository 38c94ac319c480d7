import Foundation
import Testing

@testable import LockstepLogging

/// A fresh, empty temporary directory for one test.
func makeTemporaryDirectory(_ name: String = #function) throws -> URL {
    let safe = name.filter { $0.isLetter || $0.isNumber }
    let url = FileManager.default.temporaryDirectory
        .appendingPathComponent("lockstep-training-tests-\(safe)-\(ProcessInfo.processInfo.processIdentifier)-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

@Suite struct MetricsLogTests {
    @Test func encodesSortedKeysAndExactNumbers() {
        let record: [String: MetricValue] = [
            "step": 1, "kind": "train", "loss": 2.345678901234567, "lr": 6e-4, "grad_norm": 0.1,
            "tokens_per_second": 1234.5, "time": 3.0, "skipped": false, "big": .int(Int.max),
        ]
        #expect(
            MetricsLog.encode(record)
                == #"{"big":9223372036854775807,"grad_norm":0.1,"kind":"train","loss":2.345678901234567,"#
                + #""lr":0.0006,"skipped":false,"step":1,"time":3.0,"tokens_per_second":1234.5}"#)
        #expect(MetricsLog.encode(["x": .double(1e-20)]) == #"{"x":1e-20}"#)
        #expect(MetricsLog.encode(["x": .double(.nan), "y": .double(-.infinity), "z": .null]) == #"{"x":null,"y":null,"z":null}"#)
        #expect(MetricsLog.encode(["a\"b": "line\nbreak\t\u{01}\\"]) == #"{"a\"b":"line\nbreak\t\u0001\\"}"#)
        #expect(MetricsLog.encode([:]) == "{}")
    }

    @Test func parsesWhatItWritesBitForBit() throws {
        let doubles: [Double] = [
            0, -0.0, 1, 0.1, 1.0 / 3.0, 6e-4, 2.2250738585072014e-308, 1.7976931348623157e308, -123.456, .leastNonzeroMagnitude,
        ]
        for value in doubles {
            let parsed = try MetricsLog.parse(line: MetricsLog.encode(["v": .double(value)]))
            guard case .double(let back)? = parsed["v"] else {
                Issue.record("\(value) did not read back as a double: \(String(describing: parsed["v"]))")
                continue
            }
            #expect(back.bitPattern == value.bitPattern, "\(value)")
        }
        let record: [String: MetricValue] = [
            "i": -42, "s": "héllo \"q\" \\ / \n 😀", "t": true, "f": false, "n": .null, "d": 2.5,
        ]
        #expect(try MetricsLog.parse(line: MetricsLog.encode(record)) == record)
        // Other JSON writers' spellings: spaces, escaped slash, \u escapes with a surrogate pair.
        #expect(
            try MetricsLog.parse(line: #" { "a" : 1 , "b" : "x\/y\u00e9\ud83d\ude00" , "c" : 1E3 } "#)
                == ["a": 1, "b": "x/yé😀", "c": 1000.0])
    }

    @Test func rejectsMalformedLines() {
        for bad in [#"{"a":1"#, #"{"a" 1}"#, #"["a"]"#, #"{"a":tru}"#, #"{"a":1} x"#, #"{"a":"\q"}"#, #"{"a":}"#] {
            #expect(throws: MetricsLogError.self, "\(bad)") { try MetricsLog.parse(line: bad) }
        }
        do {
            _ = try MetricsLog.parse(line: #"["a"]"#)
        } catch let error as MetricsLogError {
            #expect(error.message.hasPrefix("expected a JSON object"))
        } catch {
            Issue.record("unexpected \(error)")
        }
        #expect(throws: MetricsLogError.self) { try MetricsLog.parse(line: #"{"a":[1]}"#) }
    }

    @Test func writesAndReadsBack() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("run/metrics.jsonl")  // the directory is created
        let log = try MetricsLog(url: url, append: false)
        var written: [[String: MetricValue]] = []
        for step in 0..<5 {
            let record: [String: MetricValue] = [
                "kind": "train", "step": .int(step), "loss": .double(4.0 / Double(step + 1)),
                "lr": .double(6e-4 * Double(step)), "time": .double(0.25 * Double(step)),
            ]
            try log.write(record)
            written.append(record)
        }
        try log.write(["kind": "eval", "step": 4, "loss": 1.5, "perplexity": .double(exp(1.5))])
        written.append(["kind": "eval", "step": 4, "loss": 1.5, "perplexity": .double(exp(1.5))])
        try log.flush()
        #expect(try MetricsLog.read(url: url) == written)
        try log.close()
        #expect(throws: MetricsLogError.self) { try log.write(["step": 9]) }
        let text = try String(contentsOf: url, encoding: .utf8)
        #expect(text.split(separator: "\n").count == 6)
        #expect(text.hasPrefix(#"{"kind":"train","loss":4.0,"lr":0.0,"step":0,"time":0.0}"# + "\n"))

        // Reopening without append starts over; with append keeps what is there.
        let again = try MetricsLog(url: url, append: true)
        #expect(again.droppedTailBytes == 0)
        try again.write(["step": 5])
        try again.close()
        #expect(try MetricsLog.read(url: url) == written + [["step": 5]])
        let fresh = try MetricsLog(url: url, append: false)
        try fresh.close()
        #expect(try MetricsLog.read(url: url) == [])
    }

    @Test func appendAfterACrashDropsThePartialLine() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("metrics.jsonl")
        let complete = #"{"kind":"train","step":0}"# + "\n" + #"{"kind":"train","step":1}"# + "\n"
        let partial = #"{"kind":"train","st"#
        try Data((complete + partial).utf8).write(to: url)
        // A reader skips the partial tail too.
        #expect(try MetricsLog.read(url: url) == [["kind": "train", "step": 0], ["kind": "train", "step": 1]])

        let log = try MetricsLog(url: url, append: true)
        #expect(log.droppedTailBytes == partial.utf8.count)
        try log.write(["kind": "train", "step": 2])
        try log.close()
        let text = try String(contentsOf: url, encoding: .utf8)
        #expect(text == complete + #"{"kind":"train","step":2}"# + "\n")

        // A file that is nothing but a partial line becomes empty; a missing file is created.
        try Data(partial.utf8).write(to: url)
        let log2 = try MetricsLog(url: url, append: true)
        #expect(log2.droppedTailBytes == partial.utf8.count)
        try log2.close()
        #expect(try Data(contentsOf: url).isEmpty)
        let missing = dir.appendingPathComponent("new.jsonl")
        let log3 = try MetricsLog(url: missing, append: true)
        try log3.write(["step": 0])
        try log3.close()
        #expect(try MetricsLog.read(url: missing) == [["step": 0]])
    }

    @Test func partialLineLongerThanTheSearchChunk() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("metrics.jsonl")
        let head = #"{"step":0}"# + "\n"
        let tail = #"{"note":""# + String(repeating: "x", count: 200_000)
        try Data((head + tail).utf8).write(to: url)
        let log = try MetricsLog(url: url, append: true)
        #expect(log.droppedTailBytes == tail.utf8.count)
        try log.close()
        #expect(try String(contentsOf: url, encoding: .utf8) == head)
    }

    @Test func malformedMiddleLineNamesFileAndLine() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("metrics.jsonl")
        try Data("{\"step\":0}\n{oops}\n{\"step\":2}\n".utf8).write(to: url)
        do {
            _ = try MetricsLog.read(url: url)
            Issue.record("expected an error")
        } catch let error as MetricsLogError {
            #expect(error.line == 2)
            #expect(error.description.hasPrefix(url.path + ":2: not valid JSON"))
        }
    }
}
