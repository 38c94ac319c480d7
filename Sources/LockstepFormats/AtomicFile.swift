import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A file write failed; names the path and the system call.
public struct FileWriteError: Error, CustomStringConvertible {
    public var path: String
    public var reason: String
    public var description: String { "\(path): \(reason)" }
}

/// Writing whole files so that a reader sees either the old file or the complete new one, never a part.
public enum AtomicFile {
    /// Writes `data` to a temporary file beside `url`, fsyncs it, renames it over `url`, and fsyncs the folder.
    /// - Throws: `FileWriteError` naming the path and the failing call.
    public static func write(_ data: Data, to url: URL) throws {
        let path = url.path
        let temporary = url.deletingLastPathComponent()
            .appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())").path
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard descriptor >= 0 else { throw failure(temporary, "open") }
        var closed = false
        defer {
            if !closed { close(descriptor) }
        }
        try data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            var written = 0
            while written < raw.count {
                let result = systemWrite(descriptor, raw.baseAddress! + written, raw.count - written)
                if result < 0 {
                    if errno == EINTR { continue }
                    let error = failure(temporary, "write")
                    unlink(temporary)
                    throw error
                }
                written += result
            }
        }
        guard fsync(descriptor) == 0 else {
            let error = failure(temporary, "fsync")
            unlink(temporary)
            throw error
        }
        closed = true
        guard close(descriptor) == 0 else {
            let error = failure(temporary, "close")
            unlink(temporary)
            throw error
        }
        guard rename(temporary, path) == 0 else {
            let error = failure(path, "rename from \(temporary)")
            unlink(temporary)
            throw error
        }
        // Make the rename itself durable.
        let folder = open(url.deletingLastPathComponent().path, O_RDONLY)
        if folder >= 0 {
            _ = fsync(folder)
            close(folder)
        }
    }

    private static func failure(_ path: String, _ call: String) -> FileWriteError {
        FileWriteError(path: path, reason: "\(call) failed: \(String(cString: strerror(errno)))")
    }
}

#if canImport(Glibc)
private let systemWrite = Glibc.write
#elseif canImport(Darwin)
private let systemWrite = Darwin.write
#endif
