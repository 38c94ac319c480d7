import Foundation
import LockstepTestSupport
import Testing

@testable import LockstepLogging

/// Bytes from a hex string (test vectors).
func bytes(hex: String) -> [UInt8] {
    var out: [UInt8] = []
    var index = hex.startIndex
    while index < hex.endIndex {
        let next = hex.index(index, offsetBy: 2)
        out.append(UInt8(hex[index..<next], radix: 16)!)
        index = next
    }
    return out
}

@Suite struct TensorBoardWriterTests {
    @Test func crc32cKnownVectors() {
        // "123456789" is the standard check value; the 32-byte vectors are from RFC 3720 (iSCSI), B.4.
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        #expect(CRC32C.checksum([UInt8]()) == 0)
        #expect(CRC32C.checksum([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
        #expect(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)) == 0x62A8_AB43)
        #expect(CRC32C.checksum((0..<32).map { UInt8($0) }) == 0x46DD_794E)
        #expect(CRC32C.checksum((0..<32).reversed().map { UInt8($0) }) == 0x113F_DB5C)
    }

    @Test func recordFramingMatchesTensorBoard() {
        // tensorboard.summary.writer.record_writer.RecordWriter's bytes for the payload b"hello".
        #expect(TFRecord.frame(Array("hello".utf8)) == bytes(hex: "0500000000000000eab2043e68656c6c6fbb1f1c19"))
        // Structure of a longer record: length, its masked CRC, data, data's masked CRC.
        let data = (0..<300).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let record = TFRecord.frame(data)
        #expect(record.count == 8 + 4 + 300 + 4)
        #expect(record[0..<8] == [0x2C, 0x01, 0, 0, 0, 0, 0, 0])
        func uint32(_ slice: ArraySlice<UInt8>) -> UInt32 {
            slice.reversed().reduce(0) { $0 << 8 | UInt32($1) }
        }
        #expect(uint32(record[8..<12]) == CRC32C.masked(CRC32C.checksum(record[0..<8])))
        #expect(Array(record[12..<312]) == data)
        #expect(uint32(record[312..<316]) == CRC32C.masked(CRC32C.checksum(data)))
        #expect(CRC32C.masked(0) == 0xA282_EAD8)
    }

    @Test func eventBytesMatchTensorBoardProtos() {
        // Serialized with tensorboard.compat.proto.event_pb2 / summary_pb2.
        #expect(
            TensorBoardEvent.fileVersion(wallTime: 1_700_000_000.25)
                == bytes(hex: "0900001040fc54d9411a0d627261696e2e4576656e743a32"))
        #expect(
            TensorBoardEvent.scalars([("train/loss", 2.5), ("lr", 6e-4)], step: 300, wallTime: 1_700_000_001.5)
                == bytes(
                    hex: "0900006040fc54d94110ac022a1e0a110a0a747261696e2f6c6f737315000020400a090a026c721552491d3a"))
    }

    @Test func varints() {
        func encoded(_ value: UInt64) -> [UInt8] {
            var writer = ProtobufWriter()
            writer.varint(value)
            return writer.bytes
        }
        #expect(encoded(0) == [0])
        #expect(encoded(1) == [1])
        #expect(encoded(127) == [0x7F])
        #expect(encoded(128) == [0x80, 0x01])
        #expect(encoded(300) == [0xAC, 0x02])
        #expect(encoded(UInt64.max) == [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01])
    }

    @Test func writesFramedRecordsToANamedFile() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let logs = dir.appendingPathComponent("tb")
        let writer = try TensorBoardWriter(logDirectory: logs)
        #expect(writer.fileURL.lastPathComponent.hasPrefix("events.out.tfevents."))
        #expect(writer.fileURL.lastPathComponent.hasSuffix(".\(ProcessInfo.processInfo.processIdentifier).lockstep"))
        writer.addScalar(tag: "train/loss", value: 2.5, step: 1, wallTime: 10)
        writer.addScalars([("a", 1), ("b", 2)], step: 2, wallTime: 11)
        try writer.close()
        let file = [UInt8](try Data(contentsOf: writer.fileURL))
        // Walk the records and check each frame's CRCs.
        var offset = 0
        var payloads: [[UInt8]] = []
        while offset < file.count {
            let length = file[offset..<offset + 8].reversed().reduce(0) { $0 << 8 | Int($1) }
            let data = Array(file[offset + 12..<offset + 12 + length])
            #expect(Array(file[offset..<offset + 16 + length]) == TFRecord.frame(data))
            payloads.append(data)
            offset += 16 + length
        }
        #expect(offset == file.count)
        #expect(payloads.count == 3)
        #expect(payloads[1] == TensorBoardEvent.scalars([("train/loss", 2.5)], step: 1, wallTime: 10))
        #expect(payloads[2] == TensorBoardEvent.scalars([("a", 1), ("b", 2)], step: 2, wallTime: 11))
        // A second writer in the same second and process gets its own file.
        let second = try TensorBoardWriter(logDirectory: logs)
        #expect(second.fileURL != writer.fileURL)
        writer.addScalar(tag: "late", value: 1, step: 3)
        #expect(throws: TensorBoardWriterError.self) { try writer.flush() }
    }

    /// Reads the event file back with the `tensorboard` Python package, as TensorBoard itself would.
    @Test(.requires(.tensorboard)) func tensorBoardReadsTheScalars() throws {
        try TestEnvironment.require(.tensorboard)
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let writer = try TensorBoardWriter(logDirectory: dir)
        var expected: [String: [(step: Int, value: Double)]] = [:]
        for step in 0..<20 {
            let loss = 5.0 * exp(-0.1 * Double(step)) + 0.123456789
            let lr = 6e-4 * Double(step + 1) / 20
            writer.addScalars([("train/loss", loss), ("train/lr", lr)], step: step, wallTime: 1000 + Double(step))
            expected["train/loss", default: []].append((step, loss))
            expected["train/lr", default: []].append((step, lr))
            if step % 5 == 4 {
                writer.addScalar(tag: "eval/loss", value: loss + 0.5, step: step, wallTime: 1000.5 + Double(step))
                expected["eval/loss", default: []].append((step, loss + 0.5))
                try writer.flush()
            }
        }
        try writer.close()

        let script = """
            import json, sys
            from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
            acc = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0})
            acc.Reload()
            out = {tag: [[e.step, e.value, e.wall_time] for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
            print(json.dumps(out))
            """
        let result = Python.run(["-c", script, dir.path])
        try #require(result.status == 0, "python failed: \(result.stderr)")
        let json = try #require(
            try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: [[Double]]],
            "unexpected output: \(result.stdout)")
        #expect(Set(json.keys) == Set(expected.keys))
        for (tag, points) in expected {
            let read = json[tag] ?? []
            #expect(read.count == points.count, "\(tag)")
            for (point, row) in zip(points, read) {
                #expect(Int(row[0]) == point.step, "\(tag) step")
                // Stored as float32: exact after rounding to Float (the JSON trip may move the Double's last bit).
                #expect(Float(row[1]) == Float(point.value), "\(tag) at \(point.step): \(row[1]) vs \(point.value)")
                #expect(row[2] >= 1000 && row[2] < 1021, "\(tag) wall time \(row[2])")
            }
        }
    }
}

/// Runs the test Python (`TestEnvironment.python`) with arguments and collects its output.
enum Python {
    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    static func run(_ arguments: [String]) -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = TestEnvironment.pythonCommand(arguments)
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        do {
            try process.run()
        } catch {
            return Result(status: -1, stdout: "", stderr: "cannot start \(TestEnvironment.python): \(error)")
        }
        // Read stderr concurrently so neither pipe can fill and block the child.
        nonisolated(unsafe) var errorData = Data()
        let group = DispatchGroup()
        DispatchQueue.global().async(group: group) { errorData = err.fileHandleForReading.readDataToEndOfFile() }
        let outputData = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        process.waitUntilExit()
        return Result(
            status: process.terminationStatus, stdout: String(decoding: outputData, as: UTF8.self),
            stderr: String(decoding: errorData, as: UTF8.self))
    }
}
