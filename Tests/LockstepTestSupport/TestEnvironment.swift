import Foundation
import Testing

/// What some tests need beyond the package itself: a Python with the interoperability packages, the project's
/// `../shared` files, root for network namespaces. The one place that decides whether each is here.
///
/// A test that needs one of them carries `.requires(...)`: where the requirement is missing it is reported as
/// skipped with the reason (never as passed). With `LOCKSTEP_REQUIRE_INTEROP=1` (set by `.ci/run`) such a test
/// runs anyway and fails on its first line, `try TestEnvironment.require(...)`, naming what is missing, so CI
/// can never pass with an interoperability test skipped.
public enum TestEnvironment {
    public enum Requirement: Sendable, CustomStringConvertible {
        /// A Python with torch and transformers (Hugging Face export/import, logits comparisons).
        case transformers
        /// A Python with the tensorboard package (reading our event files back).
        case tensorboard
        /// The project's shared reference files and corpora beside the checkout (`../shared`), or one file in it.
        case shared(URL)
        /// Root and iproute2, to build network namespaces for the two-host tests.
        case networkNamespaces

        public var description: String {
            switch self {
            case .transformers: "a Python with torch and transformers (\(TestEnvironment.pythonHint))"
            case .tensorboard: "a Python with tensorboard (\(TestEnvironment.pythonHint))"
            case .shared(let url): "\(url.path) (the project's ../shared, beside its own checkout)"
            case .networkNamespaces: "root and iproute2's `ip netns` (network namespaces for the two-host test)"
            }
        }

        public var isAvailable: Bool {
            switch self {
            case .transformers: TestEnvironment.pythonModules.transformers
            case .tensorboard: TestEnvironment.pythonModules.tensorboard
            case .shared(let url): FileManager.default.fileExists(atPath: url.path)
            case .networkNamespaces: TestEnvironment.canMakeNetworkNamespaces
            }
        }
    }

    /// True when `LOCKSTEP_REQUIRE_INTEROP` is set (to anything but 0 or empty): missing requirements fail.
    public static let requireAll: Bool = {
        let value = ProcessInfo.processInfo.environment["LOCKSTEP_REQUIRE_INTEROP"] ?? ""
        return !value.isEmpty && value != "0"
    }()

    static let pythonHint = "scripts/test.sh --with-interop makes .venv-test, or set LOCKSTEP_TEST_PYTHON"

    /// The Python the interoperability tests run: `$LOCKSTEP_TEST_PYTHON`, else the package's
    /// `.venv-test/bin/python3` when it exists, else `python3` on PATH.
    public static let python: String = {
        if let path = ProcessInfo.processInfo.environment["LOCKSTEP_TEST_PYTHON"], !path.isEmpty { return path }
        let venv = SharedFiles.packageRoot.appendingPathComponent(".venv-test/bin/python3")
        if FileManager.default.isExecutableFile(atPath: venv.path) { return venv.path }
        return "python3"
    }()

    /// The command line that runs `python` with `arguments` through /usr/bin/env.
    public static func pythonCommand(_ arguments: [String]) -> [String] { [python] + arguments }

    /// Which of the packages import in `python` (probed once per test process).
    static let pythonModules: (transformers: Bool, tensorboard: Bool) = {
        func imports(_ modules: String) -> Bool {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = [python, "-c", "import \(modules)"]
            process.environment = MPIRun.environment
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            do { try process.run() } catch { return false }
            process.waitUntilExit()
            return process.terminationStatus == 0
        }
        return (imports("torch, transformers, safetensors, tokenizers"), imports("tensorboard"))
    }()

    static let canMakeNetworkNamespaces: Bool = {
        guard getuid() == 0 else { return false }
        return ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"].contains { FileManager.default.isExecutableFile(atPath: $0) }
    }()

    /// Whether a test needing `requirements` runs: all are available, or CI demands that it run (and fail).
    public static func runs(_ requirements: [Requirement]) -> Bool {
        requireAll || requirements.allSatisfy(\.isAvailable)
    }

    /// Throws, naming what is missing, when a requirement is absent (reached only with LOCKSTEP_REQUIRE_INTEROP).
    public static func require(_ requirements: Requirement...) throws {
        let missing = requirements.filter { !$0.isAvailable }
        guard missing.isEmpty else { throw Missing(requirements: missing) }
    }

    public struct Missing: Error, CustomStringConvertible {
        public var requirements: [Requirement]
        public var description: String {
            "LOCKSTEP_REQUIRE_INTEROP is set but this test's requirements are missing: "
                + requirements.map(\.description).joined(separator: "; ")
        }
    }
}

extension Trait where Self == ConditionTrait {
    /// Runs the test only where `requirements` are available (reported as skipped, with the reason, elsewhere),
    /// or always under `LOCKSTEP_REQUIRE_INTEROP=1`, where the test's `TestEnvironment.require` then fails it.
    public static func requires(
        _ requirements: TestEnvironment.Requirement..., sourceLocation: SourceLocation = #_sourceLocation
    ) -> Self {
        let comment = Comment(rawValue: "needs " + requirements.map(\.description).joined(separator: " and "))
        return .enabled(if: TestEnvironment.runs(requirements), comment, sourceLocation: sourceLocation)
    }
}
