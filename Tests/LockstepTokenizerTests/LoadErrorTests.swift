import Foundation
import Testing
import LockstepFormats
@testable import LockstepTokenizer

/// Bad tokenizer files give errors that name the file, and the line in merges.txt.
@Suite struct LoadErrorTests {
    /// A directory holding the byte vocabulary plus the tokens "ab" and "abc", and the given merges.txt.
    func directory(merges: String, vocabularyJSON: String? = nil) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("lockstep-bad-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        var json = "{"
        for byte in 0..<256 { json += JSONText.quoted(String(ByteLevel.characters[byte])) + ":\(byte)," }
        json += "\"<|endoftext|>\":256,\"ab\":257,\"abc\":258}"
        try Data((vocabularyJSON ?? json).utf8).write(to: url.appendingPathComponent("vocab.json"))
        try Data(merges.utf8).write(to: url.appendingPathComponent("merges.txt"))
        return url
    }

    func error(loading url: URL) -> TokenizerError? {
        defer { try? FileManager.default.removeItem(at: url) }
        do {
            _ = try BPETokenizer.load(directory: url)
            return nil
        } catch let error as TokenizerError {
            return error
        } catch {
            return nil
        }
    }

    @Test func goodFilesLoad() throws {
        let url = try directory(merges: "#version: 0.2\na b\nab c\n")
        defer { try? FileManager.default.removeItem(at: url) }
        let tokenizer = try BPETokenizer.load(directory: url)
        #expect(tokenizer.encode("abc ab") == [258, 32, 257])
    }

    @Test func missingFileIsNamed() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("lockstep-none-\(UUID().uuidString)")
        let error = error(loading: url)
        #expect(error == .missingFile(path: url.appendingPathComponent("vocab.json").path))
        #expect(error?.description.contains("vocab.json: no such file") == true)
    }

    @Test func mergeLineWithoutTwoTokens() throws {
        let url = try directory(merges: "#version: 0.2\na b\nab c d\n")
        let error = error(loading: url)
        #expect(error?.description == "\(url.appendingPathComponent("merges.txt").path):3: expected two tokens separated by one space, found \"ab c d\"")
    }

    @Test func mergeResultMissingFromVocabulary() throws {
        let url = try directory(merges: "a b\nb c\n")
        let error = error(loading: url)
        #expect(error?.description == "\(url.appendingPathComponent("merges.txt").path):2: the merge result \"bc\" is not in vocab.json")
    }

    @Test func mergeTokenMissingFromVocabulary() throws {
        let url = try directory(merges: "#version: 0.2\nxyz a\n")
        #expect(error(loading: url)?.description.hasSuffix("merges.txt:2: token \"xyz\" is not in vocab.json") == true)
    }

    @Test func badJSONNamesTheFile() throws {
        let url = try directory(merges: "", vocabularyJSON: "{\"a\": 1,\n \"b\": }")
        let description = error(loading: url)?.description ?? ""
        #expect(description.contains("vocab.json"))
        #expect(description.contains("invalid JSON"))
    }

    @Test func vocabularyWithoutEveryByte() throws {
        let url = try directory(merges: "", vocabularyJSON: "{\"a\": 0}")
        #expect(error(loading: url)?.description.contains("vocab.json: no token for byte 0") == true)
    }

    @Test func nonIntegerID() throws {
        let url = try directory(merges: "", vocabularyJSON: "{\"a\": \"x\"}")
        #expect(error(loading: url)?.description.contains("token \"a\" has id x; expected a non-negative integer") == true)
    }
}
