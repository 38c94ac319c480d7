import Foundation

/// A piece of a document, small enough to encode in one go.
public struct TextChunk: Sendable {
    public var text: String
    /// The first chunk of a document: an end-of-text token goes before it.
    public var startsDocument: Bool
}

/// A corpus-reading problem, naming the file and the line or byte offset.
public struct CorpusError: Error, CustomStringConvertible, Equatable {
    public var description: String
}

/// Streams the documents of corpus files as chunks of bounded size, never holding a whole file.
///
/// - Plain text (any extension but `.jsonl`): each file is one document. Chunks end after a newline that
///   is followed by a non-whitespace character: GPT-2's pre-tokenizer never joins across such a point, so
///   chunked encoding gives exactly the ids of encoding the whole file.
/// - JSONL: each line is an object whose `textField` is one document.
public final class CorpusReader: Sequence, IteratorProtocol {
    public let files: [URL]
    let textField: String
    let chunkBytes: Int
    let replaceInvalidUTF8: Bool
    private var fileIndex = 0
    private var handle: FileHandle?
    private var pending: [UInt8] = []
    private var pendingStart = 0
    private var bytesConsumedInFile = 0
    private var lineNumber = 0
    private var atDocumentStart = true
    private var endOfFile = false
    /// Bytes of input handed out so far (for progress).
    public private(set) var bytesRead = 0
    /// The first error met; iteration stops there.
    public private(set) var error: CorpusError?

    public init(files: [URL], textField: String = "text", chunkBytes: Int = 1 << 16, replaceInvalidUTF8: Bool = false)
        throws
    {
        for file in files where !FileManager.default.isReadableFile(atPath: file.path) {
            throw CorpusError(description: "\(file.path): no such readable file")
        }
        self.files = files
        self.textField = textField
        self.chunkBytes = chunkBytes
        self.replaceInvalidUTF8 = replaceInvalidUTF8
    }

    /// The files of `paths`, where a directory stands for its `.txt` and `.jsonl` files in name order.
    public static func expand(paths: [String]) throws -> [URL] {
        var files: [URL] = []
        for path in paths {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
                throw CorpusError(description: "\(path): no such file or directory")
            }
            if isDirectory.boolValue {
                let names = try FileManager.default.contentsOfDirectory(atPath: path).sorted()
                    .filter { $0.hasSuffix(".txt") || $0.hasSuffix(".jsonl") }
                if names.isEmpty { throw CorpusError(description: "\(path): no .txt or .jsonl files in this directory") }
                files += names.map { URL(fileURLWithPath: path).appendingPathComponent($0) }
            } else {
                files.append(URL(fileURLWithPath: path))
            }
        }
        return files
    }

    public static func totalBytes(of files: [URL]) -> Int {
        files.reduce(0) { total, file in
            total + ((try? FileManager.default.attributesOfItem(atPath: file.resolvingSymlinksInPath().path)[.size] as? Int) ?? 0)
        }
    }

    public func next() -> TextChunk? {
        while error == nil {
            if handle == nil {
                guard fileIndex < files.count else { return nil }
                do {
                    handle = try FileHandle(forReadingFrom: files[fileIndex])
                } catch {
                    self.error = CorpusError(description: "\(files[fileIndex].path): cannot open (\(error.localizedDescription))")
                    return nil
                }
                pending = []
                pendingStart = 0
                bytesConsumedInFile = 0
                lineNumber = 0
                atDocumentStart = true
                endOfFile = false
            }
            let isJSONL = files[fileIndex].pathExtension == "jsonl"
            if let chunk = isJSONL ? nextJSONLine() : nextTextChunk() { return chunk }
            if error != nil { return nil }
            try? handle?.close()
            handle = nil
            fileIndex += 1
        }
        return nil
    }

    /// Keeps at least `count` unread bytes buffered unless the file ends first.
    private func fill(atLeast count: Int) {
        while pending.count - pendingStart < count && !endOfFile {
            let block = handle?.readData(ofLength: Swift.max(chunkBytes, 1 << 16)) ?? Data()
            if block.isEmpty {
                endOfFile = true
            } else {
                if pendingStart > 0 {
                    pending.removeFirst(pendingStart)
                    pendingStart = 0
                }
                pending.append(contentsOf: block)
            }
        }
    }

    private func take(_ count: Int) -> ArraySlice<UInt8> {
        let slice = pending[pendingStart..<(pendingStart + count)]
        pendingStart += count
        bytesConsumedInFile += count
        bytesRead += count
        return slice
    }

    private func decode(_ bytes: ArraySlice<UInt8>, line: Int?) -> String? {
        if let text = String(validating: bytes, as: UTF8.self) { return text }
        if replaceInvalidUTF8 { return String(decoding: bytes, as: UTF8.self) }
        var offset = bytesConsumedInFile - bytes.count
        var iterator = bytes.makeIterator()
        var parser = Unicode.UTF8.ForwardParser()
        parsing: while true {
            switch parser.parseScalar(from: &iterator) {
            case .valid(let encoded): offset += encoded.count
            case .emptyInput: break parsing
            case .error: break parsing
            }
        }
        let place = line.map { "line \($0)" } ?? "byte offset \(offset)"
        error = CorpusError(
            description: "\(files[fileIndex].path): \(place): invalid UTF-8 (use --replace-invalid-utf8 to replace it with U+FFFD)")
        return nil
    }

    private func nextTextChunk() -> TextChunk? {
        fill(atLeast: chunkBytes + 1)
        let available = pending.count - pendingStart
        guard available > 0 else { return nil }
        var length = available
        if available > chunkBytes {
            // Cut after the last newline followed by a non-whitespace byte, else take all (a huge line).
            var cut = pendingStart + chunkBytes
            let whitespace: Set<UInt8> = [0x20, 0x09, 0x0A, 0x0D, 0x0B, 0x0C]
            while cut > pendingStart + 1 && !(pending[cut - 1] == 0x0A && !whitespace.contains(pending[cut])) {
                cut -= 1
            }
            if cut > pendingStart + 1 {
                length = cut - pendingStart
            } else {
                fill(atLeast: available + chunkBytes)
                length = pending.count - pendingStart
            }
        }
        guard let text = decode(take(length), line: nil) else { return nil }
        defer { atDocumentStart = false }
        return TextChunk(text: text, startsDocument: atDocumentStart)
    }

    private func nextJSONLine() -> TextChunk? {
        while true {
            fill(atLeast: 1)
            guard pending.count > pendingStart else { return nil }
            var end = pendingStart
            while true {
                if let newline = pending[end...].firstIndex(of: 0x0A) {
                    end = newline
                    break
                }
                let before = pending.count - pendingStart
                fill(atLeast: before + (1 << 16))
                if pending.count - pendingStart == before {
                    end = pending.count
                    break
                }
                end = pendingStart
            }
            lineNumber += 1
            let lineBytes = take(end - pendingStart)
            if pendingStart < pending.count { _ = take(1) }
            if lineBytes.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { continue }
            let path = files[fileIndex].path
            guard let object = try? JSONSerialization.jsonObject(with: Data(lineBytes)) as? [String: Any] else {
                error = CorpusError(description: "\(path): line \(lineNumber): expected a JSON object")
                return nil
            }
            guard let text = object[textField] as? String else {
                error = CorpusError(description: "\(path): line \(lineNumber): no string field '\(textField)'")
                return nil
            }
            return TextChunk(text: text, startsDocument: true)
        }
    }
}
