// swift-tools-version:6.0
// Lockstep: data-parallel GPT training over MPI, on CPUs with OpenBLAS. Linux only: it builds against Debian's
// Open MPI and OpenBLAS through pkg-config and uses Linux process facilities (/proc, prctl, setpriv).
import PackageDescription

/// The kernels' vector loops (softmax, GELU, LayerNorm, AdamW) are written for eight Floats at a time; on
/// x86-64 they are compiled for AVX2 and FMA (Haswell, 2013, and every later x86-64 server CPU), which runs
/// those loops about twice as fast as the SSE2 baseline. `LOCKSTEP_PORTABLE=1 swift build` builds for the
/// baseline instead, for older CPUs.
let kernelSettings: [SwiftSetting] = {
    #if arch(x86_64)
    if Context.environment["LOCKSTEP_PORTABLE"] == nil { return [.unsafeFlags(["-target-cpu", "haswell"])] }
    #endif
    return []
}()

/// Every library folder holds a README.md with its one-line purpose, which is not a source file.
let readme = ["README.md"]
let logging = Target.Dependency.product(name: "Logging", package: "swift-log")
let numerics = Target.Dependency.product(name: "RealModule", package: "swift-numerics")

let package = Package(
    name: "Lockstep",
    products: [
        .executable(name: "lockstep", targets: ["lockstep"]),
        .library(name: "LockstepTraining", targets: ["LockstepTraining"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-numerics", from: "1.0.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.0.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
    ],
    targets: [
        // MARK: - C libraries
        .systemLibrary(
            name: "COpenBLAS", pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(
            name: "CMPI", pkgConfig: "ompi-c",
            providers: [.apt(["libopenmpi-dev", "openmpi-bin"])]),

        // MARK: - Libraries, bottom up, one per stage of the data flow (docs/ARCHITECTURE.md draws the graph).
        // Each folder's README.md says its purpose in one line.
        .target(
            name: "LockstepKernels", dependencies: ["COpenBLAS", "LockstepRandom", numerics], exclude: readme,
            swiftSettings: kernelSettings),
        .target(name: "LockstepRandom", exclude: readme),
        .target(name: "LockstepFormats", exclude: readme),
        .target(name: "LockstepLogging", dependencies: ["LockstepFormats", logging], exclude: readme),
        .target(name: "LockstepModel", dependencies: ["LockstepKernels", "LockstepFormats", "LockstepRandom"], exclude: readme),
        .target(
            name: "LockstepOptimizer", dependencies: ["LockstepKernels", "LockstepModel", numerics], exclude: readme,
            swiftSettings: kernelSettings),
        .target(name: "LockstepTokenizer", dependencies: ["LockstepFormats"], exclude: readme),
        .target(name: "LockstepData", dependencies: ["LockstepTokenizer", "LockstepRandom", "LockstepLogging"], exclude: readme),
        .target(
            name: "LockstepDistributed", dependencies: ["CMPI", "LockstepFormats", "LockstepLogging", logging],
            exclude: readme),
        .target(
            name: "LockstepConfig", dependencies: ["LockstepData", "LockstepModel", .product(name: "Yams", package: "Yams")],
            exclude: readme),
        .target(
            name: "LockstepCheckpoints",
            dependencies: [
                "LockstepConfig", "LockstepModel", "LockstepData", "LockstepTokenizer", "LockstepFormats", "LockstepLogging",
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            exclude: readme),
        .target(
            name: "LockstepEvaluation",
            dependencies: ["LockstepCheckpoints", "LockstepConfig", "LockstepModel", "LockstepData", "LockstepTokenizer"],
            exclude: readme),
        .target(
            name: "LockstepTraining",
            dependencies: [
                "LockstepModel", "LockstepKernels", "LockstepOptimizer", "LockstepData", "LockstepDistributed", "LockstepTokenizer",
                "LockstepConfig", "LockstepCheckpoints", "LockstepEvaluation", "LockstepLogging", logging,
            ],
            exclude: readme),

        // MARK: - Executables (thin: parse arguments, call the libraries)
        .executableTarget(
            name: "lockstep",
            dependencies: [
                "LockstepTraining", "LockstepConfig", "LockstepCheckpoints", "LockstepEvaluation", "LockstepLogging",
                "LockstepData", "LockstepModel", "LockstepTokenizer", "LockstepDistributed", "LockstepKernels", "LockstepFormats",
                .product(name: "ArgumentParser", package: "swift-argument-parser"), logging,
            ]),
        .executableTarget(
            name: "lockstep-coordinator",
            dependencies: [
                "LockstepTraining", "LockstepDistributed", "LockstepLogging",
                .product(name: "ArgumentParser", package: "swift-argument-parser"), logging,
            ]),
        .executableTarget(
            name: "lockstep-worker", dependencies: ["LockstepTraining", "LockstepDistributed", "LockstepKernels", "LockstepLogging", logging]),
        .executableTarget(name: "mpi-allreduce-check", dependencies: ["LockstepDistributed"]),
        // Scenarios for the LockstepDistributed tests, each run under mpirun: `lockstep-distributed-check <scenario>`.
        .executableTarget(
            name: "lockstep-distributed-check", dependencies: ["LockstepDistributed", "LockstepTraining", "LockstepRandom"]),

        // MARK: - Tests
        .target(
            name: "LockstepTestSupport", dependencies: ["LockstepDistributed", "LockstepKernels"], path: "Tests/LockstepTestSupport"),
        .testTarget(
            name: "LockstepKernelsTests",
            dependencies: [
                "LockstepKernels", "LockstepTestSupport", numerics,
            ]),
        .testTarget(name: "LockstepFormatsTests", dependencies: ["LockstepFormats", "LockstepTestSupport"]),
        .testTarget(name: "LockstepLoggingTests", dependencies: ["LockstepLogging", "LockstepTestSupport"]),
        .testTarget(name: "LockstepModelTests", dependencies: ["LockstepModel", "LockstepOptimizer", "LockstepTestSupport"]),
        .testTarget(name: "LockstepOptimizerTests", dependencies: ["LockstepOptimizer", "LockstepTestSupport"]),
        .testTarget(
            name: "LockstepTokenizerTests", dependencies: ["LockstepTokenizer", "LockstepFormats", "LockstepTestSupport"]),
        .testTarget(name: "LockstepDataTests", dependencies: ["LockstepData", "LockstepTestSupport"]),
        .testTarget(name: "LockstepDistributedTests", dependencies: ["LockstepDistributed", "LockstepTestSupport"]),
        .testTarget(name: "LockstepConfigTests", dependencies: ["LockstepConfig", "LockstepTestSupport"]),
        .testTarget(name: "LockstepCheckpointsTests", dependencies: ["LockstepCheckpoints", "LockstepTestSupport"]),
        .testTarget(name: "LockstepEvaluationTests", dependencies: ["LockstepEvaluation", "LockstepTestSupport"]),
        .testTarget(
            name: "LockstepTrainingTests",
            dependencies: [
                "LockstepTraining", "LockstepDistributed", "LockstepConfig", "LockstepCheckpoints", "LockstepEvaluation",
                "LockstepLogging", "LockstepOptimizer", "LockstepKernels", "LockstepTestSupport",
            ]),
    ]
)
