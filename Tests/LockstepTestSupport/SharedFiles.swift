import Foundation

/// The project's shared reference files and corpora, which live beside the checkout (`../shared`) on
/// developer and CI machines but not in a user's clone. Tests that need them skip with a message when absent.
public enum SharedFiles {
    /// The package root, found from this source file's path.
    public static let packageRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    public static let shared: URL = packageRoot.deletingLastPathComponent().appendingPathComponent("shared")
    public static let reference: URL = shared.appendingPathComponent("reference/gpt2-tiny")
    public static let data: URL = shared.appendingPathComponent("data")

    /// True when `url` exists; otherwise prints why the caller is skipping, so a skipped test says so.
    public static func available(_ url: URL, for test: String = #function) -> Bool {
        if FileManager.default.fileExists(atPath: url.path) { return true }
        print("SKIPPED \(test): \(url.path) is absent (it exists only beside the project's own checkout)")
        return false
    }
}
