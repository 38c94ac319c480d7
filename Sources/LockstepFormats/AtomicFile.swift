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
        try data.withUnsafeBytes { try write(parts: [$0], to: url) }
    }

    /// `write(_:to:)` for a file made of `parts` one after another, written straight from them: a large file
    /// (a checkpoint's tensors) needs no copy of itself in memory.
    public static func write(parts: [UnsafeRawBufferPointer], to url: URL) throws {
        let temporary = url.deletingLastPathComponent()
            .appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())").path
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard descriptor >= 0 else { throw failure(temporary, "open") }
        var closed = false
        defer {
            if !closed { close(descriptor) }
        }
        for raw in parts where raw.count > 0 {
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
        do {
            try rename(URL(fileURLWithPath: temporary), to: url)
        } catch {
            unlink(temporary)
            throw error
        }
    }

    /// Renames `source` to `destination` (a file or a directory, on one file system) and fsyncs the folder that
    /// holds `destination`, so that the rename itself survives a crash.
    /// - Throws: `FileWriteError` naming the path and the failing call.
    public static func rename(_ source: URL, to destination: URL) throws {
        guard systemRename(source.path, destination.path) == 0 else {
            throw failure(destination.path, "rename from \(source.path)")
        }
        try sync(destination.deletingLastPathComponent())
    }

    /// Puts the complete directory `source` in the place of `destination` in one step, so that a reader (or a
    /// crash) sees the old `destination` or the new one, never neither: `renameat2(RENAME_EXCHANGE)` swaps the
    /// two names atomically, then the old contents (now at `source`) are removed. Where the kernel or file system
    /// cannot exchange, the old directory is first renamed aside (`.<name>.old-<pid>`) and then replaced, which
    /// leaves a short window without `destination`. A missing `destination` is a plain rename. The folder that
    /// holds `destination` is fsynced either way.
    /// - Throws: `FileWriteError` naming the path and the failing call; `destination` is then unchanged.
    public static func replaceDirectory(_ destination: URL, with source: URL) throws {
        let fileManager = FileManager.default
        guard fileManager.fileExists(atPath: destination.path) else {
            try rename(source, to: destination)
            return
        }
        if let exchange = renameExchange {
            if exchange(AT_FDCWD, source.path, AT_FDCWD, destination.path, renameExchangeFlag) == 0 {
                try sync(destination.deletingLastPathComponent())
                do {
                    try fileManager.removeItem(at: source)
                } catch {
                    throw FileWriteError(
                        path: source.path, reason: "removing the replaced directory failed: \(error.localizedDescription)")
                }
                return
            }
            let code = errno
            guard code == EINVAL || code == ENOSYS || code == ENOTSUP || code == EOPNOTSUPP else {
                throw failure(destination.path, "renameat2(RENAME_EXCHANGE) with \(source.path)")
            }
        }
        let aside = destination.deletingLastPathComponent()
            .appendingPathComponent(".\(destination.lastPathComponent).old-\(getpid())")
        try? fileManager.removeItem(at: aside)
        try rename(destination, to: aside)
        do {
            try rename(source, to: destination)
        } catch {
            try? rename(aside, to: destination)
            throw error
        }
        do {
            try fileManager.removeItem(at: aside)
        } catch {
            throw FileWriteError(path: aside.path, reason: "removing the replaced directory failed: \(error.localizedDescription)")
        }
    }

    /// Flushes a file's or a folder's contents (a folder's: its entries) to the disk.
    /// - Throws: `FileWriteError` naming the path when it cannot be opened or fsync fails.
    public static func sync(_ url: URL) throws {
        let descriptor = open(url.path, O_RDONLY)
        guard descriptor >= 0 else { throw failure(url.path, "open to sync") }
        defer { close(descriptor) }
        guard fsync(descriptor) == 0 else { throw failure(url.path, "fsync") }
    }

    private static func failure(_ path: String, _ call: String) -> FileWriteError {
        FileWriteError(path: path, reason: "\(call) failed: \(String(cString: strerror(errno)))")
    }
}

#if canImport(Glibc)
/// glibc's `renameat2` (2.28 and later), which Swift's Glibc module does not declare; nil where it is missing.
private let renameExchange: (@convention(c) (Int32, UnsafePointer<CChar>, Int32, UnsafePointer<CChar>, UInt32) -> Int32)? = {
    guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "renameat2") else { return nil }
    return unsafeBitCast(
        symbol, to: (@convention(c) (Int32, UnsafePointer<CChar>, Int32, UnsafePointer<CChar>, UInt32) -> Int32).self)
}()
/// `RENAME_EXCHANGE` from <linux/fs.h>.
private let renameExchangeFlag: UInt32 = 1 << 1
private let systemWrite = Glibc.write
private let systemRename = Glibc.rename
#elseif canImport(Darwin)
private let renameExchange: (@convention(c) (Int32, UnsafePointer<CChar>, Int32, UnsafePointer<CChar>, UInt32) -> Int32)? = nil
private let renameExchangeFlag: UInt32 = 0
private let systemWrite = Darwin.write
private let systemRename = Darwin.rename
#endif
