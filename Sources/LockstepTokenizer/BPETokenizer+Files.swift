import Foundation
import LockstepFormats

// MARK: - vocab.json + merges.txt, as GPT-2 and Hugging Face write them

extension BPETokenizer {
    /// A tokenizer as the command line and configs name it: `bytes` for the plain byte vocabulary, else a
    /// directory holding `vocab.json` and `merges.txt`.
    public static func load(named name: String) throws -> BPETokenizer {
        name == "bytes" ? BPETokenizer.bytes() : try load(directory: URL(fileURLWithPath: name))
    }

    /// Loads `directory/vocab.json` (token -> id) and `directory/merges.txt` (one merge `left right` per
    /// line in rank order, after an optional `#version: ...` first line).
    ///
    /// - Parameter specialTokens: tokens to match literally in text, when the vocabulary has them. GPT-2's
    ///   files do not say which tokens are special, so this defaults to `<|endoftext|>`.
    /// - Throws: `TokenizerError` naming the file, and the line for a bad merge: a missing file, JSON that
    ///   is not an object of non-negative integer ids, two tokens with one id, a vocabulary without the 256
    ///   byte-level characters, a merge line that is not two tokens, or a merge whose tokens or result are
    ///   not in the vocabulary.
    public static func load(directory: URL, specialTokens: [String] = ["<|endoftext|>"]) throws -> BPETokenizer {
        let vocabularyURL = directory.appendingPathComponent("vocab.json")
        let mergesURL = directory.appendingPathComponent("merges.txt")
        let vocabulary = try readVocabulary(vocabularyURL)
        let rules = try readMerges(mergesURL, vocabulary: vocabulary)
        return BPETokenizer(vocabulary: vocabulary, rules: rules, specialTokens: specialTokens)
    }

    /// Writes `vocab.json` (ids in increasing order) and `merges.txt` (with a `#version: 0.2` line) into
    /// `directory`, creating it if needed. Hugging Face's `ByteLevelBPETokenizer.from_file` and
    /// `GPT2TokenizerFast` read them.
    public func save(directory: URL) throws {
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        } catch {
            throw TokenizerError.unwritableFile(path: directory.path, reason: error.localizedDescription)
        }
        var json = "{"
        for (index, (token, id)) in vocabulary.sorted(by: { $0.value < $1.value }).enumerated() {
            if index > 0 { json += "," }
            json += JSONText.quoted(token) + ":" + String(id)
        }
        json += "}"
        var text = "#version: 0.2\n"
        for merge in merges { text += merge.left + " " + merge.right + "\n" }
        try write(json, to: directory.appendingPathComponent("vocab.json"))
        try write(text, to: directory.appendingPathComponent("merges.txt"))
    }

    private func write(_ text: String, to url: URL) throws {
        do {
            try AtomicFile.write(Data(text.utf8), to: url)
        } catch {
            throw TokenizerError.unwritableFile(path: url.path, reason: error.localizedDescription)
        }
    }

    static func readFile(_ url: URL) throws -> Data {
        guard FileManager.default.fileExists(atPath: url.path) else { throw TokenizerError.missingFile(path: url.path) }
        do {
            return try Data(contentsOf: url)
        } catch {
            throw TokenizerError.unreadableFile(path: url.path, reason: error.localizedDescription)
        }
    }

    static func readVocabulary(_ url: URL) throws -> [String: Int32] {
        let data = try readFile(url)
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: data)
        } catch {
            let nsError = error as NSError
            let line = (nsError.userInfo["NSJSONSerializationErrorIndex"] as? Int).map { lineNumber(ofOffset: $0, in: data) }
            let detail = nsError.userInfo[NSDebugDescriptionErrorKey] as? String ?? nsError.localizedDescription
            throw TokenizerError.invalidFile(path: url.path, line: line, reason: "invalid JSON: \(detail)")
        }
        guard let entries = object as? [String: Any] else {
            throw TokenizerError.invalidFile(
                path: url.path, line: nil, reason: "expected a JSON object mapping each token to its id")
        }
        var vocabulary: [String: Int32] = [:]
        var tokenForID: [Int32: String] = [:]
        for (token, value) in entries {
            guard let number = value as? NSNumber,
                  let id = Int32(exactly: number.doubleValue), id >= 0, Double(id) == number.doubleValue
            else {
                throw TokenizerError.invalidFile(
                    path: url.path, line: nil,
                    reason: "token \(JSONText.quoted(token)) has id \(value); expected a non-negative integer")
            }
            if let other = tokenForID[id] {
                throw TokenizerError.invalidFile(
                    path: url.path, line: nil,
                    reason: "tokens \(JSONText.quoted(other)) and \(JSONText.quoted(token)) both have id \(id)")
            }
            tokenForID[id] = token
            vocabulary[token] = id
        }
        for byte in 0..<256 where vocabulary[String(ByteLevel.characters[byte])] == nil {
            throw TokenizerError.invalidFile(
                path: url.path, line: nil,
                reason: "no token for byte \(byte) (\(JSONText.quoted(String(ByteLevel.characters[byte])))); "
                    + "a byte-level vocabulary has all 256 byte characters")
        }
        return vocabulary
    }

    static func readMerges(_ url: URL, vocabulary: [String: Int32]) throws -> [MergeRule] {
        let data = try readFile(url)
        guard let text = String(data: data, encoding: .utf8) else {
            throw TokenizerError.invalidFile(path: url.path, line: nil, reason: "not valid UTF-8")
        }
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        if lines.last == "" { lines.removeLast() }
        var rules: [MergeRule] = []
        rules.reserveCapacity(lines.count)
        for (index, rawLine) in lines.enumerated() {
            let line = rawLine.hasSuffix("\r") ? rawLine.dropLast() : rawLine
            if index == 0 && line.hasPrefix("#version") { continue }
            let parts = line.split(separator: " ", omittingEmptySubsequences: false)
            func fail(_ reason: String) -> TokenizerError {
                .invalidFile(path: url.path, line: index + 1, reason: reason)
            }
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                throw fail("expected two tokens separated by one space, found \(JSONText.quoted(String(line)))")
            }
            let left = String(parts[0])
            let right = String(parts[1])
            guard let leftID = vocabulary[left] else { throw fail("token \(JSONText.quoted(left)) is not in vocab.json") }
            guard let rightID = vocabulary[right] else { throw fail("token \(JSONText.quoted(right)) is not in vocab.json") }
            guard let resultID = vocabulary[left + right] else {
                throw fail("the merge result \(JSONText.quoted(left + right)) is not in vocab.json")
            }
            rules.append(MergeRule(left: leftID, right: rightID, result: resultID))
        }
        return rules
    }

    static func lineNumber(ofOffset offset: Int, in data: Data) -> Int {
        1 + data.prefix(max(0, offset)).reduce(0) { $0 + ($1 == 0x0A ? 1 : 0) }
    }

}

// MARK: - The plain byte vocabulary

extension BPETokenizer {
    /// The byte vocabulary for character-level runs: id b is byte b (0...255), no merges, then the special
    /// tokens from 256 on (`<|endoftext|>` = 256). It saves and loads through the same two files.
    public static func bytes(specialTokens: [String] = ["<|endoftext|>"]) -> BPETokenizer {
        var vocabulary: [String: Int32] = [:]
        for byte in 0..<256 { vocabulary[String(ByteLevel.characters[byte])] = Int32(byte) }
        for token in specialTokens where vocabulary[token] == nil { vocabulary[token] = Int32(vocabulary.count) }
        return BPETokenizer(vocabulary: vocabulary, rules: [], specialTokens: specialTokens)
    }
}
