import Foundation

/// A pipe that a child writes its standard error into: every line is passed on to this process's standard
/// error as it comes, and the lines that say why a job failed are kept, so a supervisor can name the cause
/// ("hang detected: rank 2 did not answer ...", "process rank 2 ... exited on signal 9").
///
/// The reader never waits without a deadline: `finish(seconds:)` drains what is there and stops, even when
/// a process that outlived the child (a remote daemon's launcher) still holds the pipe open.
public final class OutputRelay: @unchecked Sendable {
    /// The write end, for `ProcessLauncher.spawn(standardError:)`; closed here once the child has it.
    public private(set) var writeEnd: Int32
    private let readEnd: Int32
    private let lock = NSLock()
    private var notable: [(priority: Int, line: String)] = []
    private var stopping = false
    private let done = DispatchSemaphore(value: 0)
    private let passOn: FileHandle

    public init(passOn: FileHandle = .standardError) throws {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else {
            throw ProcessLauncher.LaunchError(description: "cannot create a pipe: \(String(cString: strerror(errno)))")
        }
        // Neither end may leak into other children (only `spawn`'s dup2 onto fd 2 passes the write end on).
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        readEnd = fds[0]
        writeEnd = fds[1]
        self.passOn = passOn
        Thread.detachNewThread { [self] in self.readLoop() }
    }

    /// Call once the child is started: only the child holds the write end from then on.
    public func childStarted() {
        if writeEnd >= 0 { close(writeEnd) }
        writeEnd = -1
    }

    /// The most telling line seen: a hang diagnosis first, then a rank or daemon lost, then a timeout, then
    /// any error; the earliest of its kind. Nil when nothing notable was written.
    public var reason: String? {
        lock.withLock { notable.min { $0.priority < $1.priority }?.line }
    }

    /// After the child ended: passes on what is left (up to `seconds`), then stops reading and closes.
    public func finish(seconds: Double = 2) {
        childStarted()
        lock.withLock { stopping = true }
        if done.wait(timeout: .now() + seconds) == .timedOut {
            // Something still holds the pipe open and keeps writing: leave the reader to end on its own.
            return
        }
        close(readEnd)
    }

    private func readLoop() {
        var pending = Data()
        var buffer = [UInt8](repeating: 0, count: 65536)
        var quietRounds = 0
        while true {
            var descriptor = pollfd(fd: readEnd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&descriptor, 1, 100)
            if ready > 0 {
                let count = read(readEnd, &buffer, buffer.count)
                if count <= 0 { break }
                quietRounds = 0
                let chunk = Data(buffer[0..<count])
                passOn.write(chunk)
                pending.append(chunk)
                while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                    note(String(decoding: pending[pending.startIndex..<newline], as: UTF8.self))
                    pending = Data(pending[pending.index(after: newline)...])
                }
            } else if ready == 0 || errno == EINTR {
                // Stop once asked and nothing came for a few rounds (the child is gone, the rest is stragglers).
                quietRounds += 1
                if lock.withLock({ stopping }) && quietRounds >= 3 { break }
            } else {
                break
            }
        }
        if !pending.isEmpty { note(String(decoding: pending, as: UTF8.self)) }
        done.signal()
    }

    private func note(_ line: String) {
        let text = line.trimmingCharacters(in: .whitespaces)
        let lowered = text.lowercased()
        let priority: Int
        if lowered.contains("hang detected") {
            priority = 0
        } else if lowered.contains("exited on signal") || lowered.contains("lost communication")
            || lowered.contains("lost connection") || lowered.contains("no longer running")
            || lowered.contains("unable to reliably start") || lowered.contains("unexpectedly failed")
        {
            priority = 1
        } else if lowered.contains("timed out") {
            priority = 2
        } else if lowered.contains("error:") || lowered.contains("error ") && lowered.contains("rank") {
            priority = 3
        } else {
            return
        }
        lock.withLock {
            if notable.count < 100 { notable.append((priority, String(text.prefix(400)))) }
        }
    }
}
