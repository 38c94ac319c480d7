import Foundation

/// The project's shared reference files and corpora, which live beside the checkout (`../shared`) on
/// developer and CI machines but not in a user's clone. Tests that need them carry
/// `.requires(.shared(url))` (see `TestEnvironment`): skipped when absent, failed when CI requires them.
public enum SharedFiles {
    /// The package root, found from this source file's path.
    public static let packageRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    public static let shared: URL = packageRoot.deletingLastPathComponent().appendingPathComponent("shared")
    public static let reference: URL = shared.appendingPathComponent("reference/gpt2-tiny")
    public static let data: URL = shared.appendingPathComponent("data")
}
