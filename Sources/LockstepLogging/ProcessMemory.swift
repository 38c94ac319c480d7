import Foundation

/// This process's memory as Linux tells it in `/proc/self/status`, for the `peak_rss_bytes` of train records.
public enum ProcessMemory {
    /// The peak resident set size so far (`VmHWM`), in bytes; nil where `/proc` is missing or says no such line.
    public static func peakResidentBytes() -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        return kibibytes(field: "VmHWM:", in: status).map { $0 * 1024 }
    }

    /// The value of a `Name:   1234 kB` line of a `/proc/.../status` text, in KiB.
    static func kibibytes(field: String, in status: String) -> Int? {
        for line in status.split(separator: "\n") where line.hasPrefix(field) {
            let words = line.dropFirst(field.count).split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard words.count == 2, words[1] == "kB", let value = Int(words[0]) else { return nil }
            return value
        }
        return nil
    }
}
