import Foundation
import LockstepTestSupport
import Testing

@testable import LockstepFormats

/// safetensors: round trips, Hugging Face's own file, and one test per malformed case (each error must name
/// the file and the problem).
@Suite struct SafeTensorsTests {
    /// Builds a file by hand from a header string and a data section, as a malformed file would be.
    static func file(header: String, data: [UInt8], declaredLength: UInt64? = nil) -> Data {
        let headerBytes = Array(header.utf8)
        var out = Data()
        var length = (declaredLength ?? UInt64(headerBytes.count)).littleEndian
        withUnsafeBytes(of: &length) { out.append(contentsOf: $0) }
        out.append(contentsOf: headerBytes)
        out.append(contentsOf: data)
        return out
    }

    static func expectError(_ data: Data, containing text: String, sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            _ = try SafeTensorsFile.parse(data, file: "bad.safetensors")
            Issue.record("expected an error containing '\(text)'", sourceLocation: sourceLocation)
        } catch let error as SafeTensorsError {
            #expect(error.description.hasPrefix("bad.safetensors: "), sourceLocation: sourceLocation)
            #expect(error.description.contains(text), "\(error)", sourceLocation: sourceLocation)
        } catch {
            Issue.record("unexpected error type \(error)", sourceLocation: sourceLocation)
        }
    }

    @Test func roundTrip() throws {
        var writer = SafeTensorsWriter()
        writer.metadata = ["format": "pt", "note": "quote \" and\nnewline"]
        let floats: [Float] = [1.5, -2, .pi, 0, 1e-30, -.infinity]
        try writer.add("b.floats", floats: floats, shape: [2, 3])
        try writer.add("a.ints", int32s: [1, -2, .max, .min], shape: [4])
        try writer.add("c.longs", int64s: [1 << 40, -7], shape: [2, 1])
        try writer.add("empty", floats: [], shape: [0, 5])
        try writer.add("scalar", floats: [42], shape: [])

        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("safetensors-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let url = folder.appendingPathComponent("t.safetensors")
        try writer.write(to: url)
        // No temporary file is left beside it.
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path) == ["t.safetensors"])

        let read = try SafeTensorsFile.read(url)
        #expect(read.metadata == writer.metadata)
        #expect(Set(read.names) == ["a.ints", "b.floats", "c.longs", "empty", "scalar"])
        #expect(try read.floats(named: "b.floats") == floats)
        #expect(try read.tensor(named: "b.floats").shape == [2, 3])
        #expect(try read.tensor(named: "b.floats").dtype == .f32)
        #expect(try read.int32s(named: "a.ints") == [1, -2, .max, .min])
        #expect(try read.int64s(named: "a.ints") == [1, -2, Int64(Int32.max), Int64(Int32.min)])
        #expect(try read.int64s(named: "c.longs") == [1 << 40, -7])
        #expect(try read.tensor(named: "c.longs").dtype == .i64)
        #expect(try read.floats(named: "empty") == [])
        #expect(try read.floats(named: "scalar") == [42])

        // Layout as Hugging Face writes it: header a multiple of 8, 8-byte tensors first.
        let bytes = try Data(contentsOf: url)
        let headerLength = bytes.prefix(8).enumerated().reduce(0) { $0 | (Int($1.element) << (8 * $1.offset)) }
        #expect(headerLength % 8 == 0)
        #expect(read.tensors.first?.name == "c.longs")

        #expect(throws: SafeTensorsError.self) { try read.int32s(named: "c.longs") }  // 1 << 40 does not fit
        #expect(throws: SafeTensorsError.self) { try read.floats(named: "a.ints") }
        #expect(throws: SafeTensorsError.self) { try read.int32s(named: "b.floats") }
        #expect(throws: SafeTensorsError.self) { try read.tensor(named: "missing") }
    }

    @Test func writerRejectsBadInput() {
        var writer = SafeTensorsWriter()
        #expect(throws: SafeTensorsError.self) { try writer.add("x", floats: [1, 2, 3], shape: [2, 2]) }
        #expect(throws: SafeTensorsError.self) { try writer.add("__metadata__", floats: [1], shape: [1]) }
        #expect(throws: Never.self) { try writer.add("x", floats: [1], shape: [1]) }
        #expect(throws: SafeTensorsError.self) { try writer.add("x", floats: [1], shape: [1]) }
    }

    @Test func halfPrecisionIsConverted() throws {
        // F16: 1.0 = 0x3C00, -2.0 = 0xC000, smallest subnormal 0x0001 = 2^-24, inf 0x7C00.
        // BF16: 1.0 = 0x3F80, -0.5 = 0xBF00.
        let header = #"{"h":{"dtype":"F16","shape":[4],"data_offsets":[0,8]},"b":{"dtype":"BF16","shape":[2],"data_offsets":[8,12]}}"#
        let data: [UInt8] = [0x00, 0x3C, 0x00, 0xC0, 0x01, 0x00, 0x00, 0x7C, 0x80, 0x3F, 0x00, 0xBF]
        let read = try SafeTensorsFile.parse(Self.file(header: header, data: data))
        #expect(try read.floats(named: "h") == [1, -2, 0x1p-24, .infinity])
        #expect(try read.floats(named: "b") == [1, -0.5])
    }

    @Test func truncatedFile() {
        Self.expectError(Data([1, 2, 3]), containing: "truncated")
    }

    @Test func headerLengthBeyondFile() {
        Self.expectError(Self.file(header: "{}", data: [], declaredLength: 100), containing: "header length 100 goes beyond")
    }

    @Test func badJSON() {
        Self.expectError(Self.file(header: "{\"a\": ", data: []), containing: "bad JSON header")
        Self.expectError(
            Self.file(header: #"{"a":{"dtype":"F32","shape":[1]}}"#, data: [0, 0, 0, 0]),
            containing: "data_offsets")
        Self.expectError(
            Self.file(header: #"{"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0]),
            containing: "bad JSON header")
        Self.expectError(
            Self.file(header: #"{"__metadata__":{"k":1}}"#, data: []), containing: "__metadata__")
    }

    @Test func unknownDType() {
        Self.expectError(
            Self.file(header: #"{"a":{"dtype":"F8","shape":[1],"data_offsets":[0,1]}}"#, data: [0]),
            containing: "unknown dtype 'F8'")
    }

    @Test func offsetsOutOfRange() {
        Self.expectError(
            Self.file(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, data: [0, 0, 0, 0]),
            containing: "go beyond the data section of 4 bytes")
        Self.expectError(
            Self.file(header: #"{"a":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}}"#, data: [0, 0, 0, 0]),
            containing: "not an ordered pair")
        Self.expectError(
            Self.file(header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}"#, data: [0, 0, 0, 0]),
            containing: "expected 2")
    }

    @Test func overlappingOffsets() {
        let header = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#
        Self.expectError(Self.file(header: header, data: [UInt8](repeating: 0, count: 12)), containing: "overlaps")
    }

    @Test func gappedOffsets() {
        let header = #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#
        Self.expectError(Self.file(header: header, data: [UInt8](repeating: 0, count: 12)), containing: "gap of 4 bytes")
        let trailing = #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#
        Self.expectError(Self.file(header: trailing, data: [UInt8](repeating: 0, count: 8)), containing: "cover only 4")
    }

    @Test func sizeMismatch() {
        Self.expectError(
            Self.file(header: #"{"a":{"dtype":"I64","shape":[2,3],"data_offsets":[0,24]}}"#, data: [UInt8](repeating: 0, count: 24)),
            containing: "needs 48 bytes")
        Self.expectError(
            Self.file(header: #"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0]),
            containing: "negative dimension")
    }

    @Test func missingFileNamesIt() {
        #expect {
            try SafeTensorsFile.read(URL(fileURLWithPath: "/nonexistent/x.safetensors"))
        } throws: { error in
            "\(error)".contains("/nonexistent/x.safetensors")
        }
    }

    @Test(.requires(.shared(SharedFiles.reference.appendingPathComponent("lm/model.safetensors")))) func readsHuggingFaceFile() throws {
        let url = SharedFiles.reference.appendingPathComponent("lm/model.safetensors")
        try TestEnvironment.require(.shared(url))
        let file = try SafeTensorsFile.read(url)
        #expect(file.metadata == ["format": "pt"])
        #expect(file.tensors.count == 28)  // 2 embeddings + 2 × 12 per block + ln_f weight and bias
        #expect(try file.tensor(named: "transformer.h.0.attn.c_attn.weight").shape == [48, 144])
        #expect(try file.tensor(named: "transformer.wte.weight").shape == [64, 48])
        let ln = try file.floats(named: "transformer.h.1.ln_1.weight")
        #expect(ln.count == 48)
        #expect(ln.allSatisfy { $0 == 1 })  // fresh LayerNorm weights

        let expected = try SafeTensorsFile.read(SharedFiles.reference.appendingPathComponent("lm/expected.safetensors"))
        let ids = try expected.int32s(named: "input_ids")
        #expect(ids.count == 32)
        #expect(ids.allSatisfy { (0..<64).contains($0) })
    }
}
