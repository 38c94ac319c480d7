// swift-tools-version:6.0
// Lockstep: data-parallel GPT training over MPI, on CPUs with OpenBLAS.
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

let package = Package(
    name: "Lockstep",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "lockstep", targets: ["lockstep"]),
        .library(name: "LockstepTraining", targets: ["LockstepTraining"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-numerics", from: "1.0.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.0.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.5.0"),
    ],
    targets: [
        // MARK: - C libraries
        .systemLibrary(
            name: "COpenBLAS", pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(
            name: "CMPI", pkgConfig: "ompi-c",
            providers: [.apt(["libopenmpi-dev", "openmpi-bin"])]),

        // MARK: - Libraries, bottom up, one per stage of the data flow (docs/ARCHITECTURE.md draws the graph)
        .target(
            name: "LockstepKernels",
            dependencies: ["COpenBLAS", .product(name: "RealModule", package: "swift-numerics")],
            swiftSettings: kernelSettings),
        .target(name: "LockstepRandom"),
        .target(name: "LockstepFormats"),
        .target(name: "LockstepLogging", dependencies: ["LockstepFormats", .product(name: "Logging", package: "swift-log")]),
        .target(name: "LockstepModel", dependencies: ["LockstepKernels", "LockstepFormats", "LockstepRandom"]),
        .target(
            name: "LockstepOptimizer",
            dependencies: ["LockstepKernels", "LockstepModel", .product(name: "RealModule", package: "swift-numerics")],
            swiftSettings: kernelSettings),
        .target(name: "LockstepTokenizer", dependencies: ["LockstepFormats"]),
        .target(name: "LockstepData", dependencies: ["LockstepTokenizer", "LockstepRandom", "LockstepLogging"]),
        .target(name: "LockstepDistributed", dependencies: ["CMPI", "LockstepFormats", "LockstepLogging"]),
        .target(name: "LockstepConfig", dependencies: ["LockstepData", .product(name: "Yams", package: "Yams")]),
        .target(
            name: "LockstepCheckpoints",
            dependencies: [
                "LockstepConfig", "LockstepModel", "LockstepData", "LockstepTokenizer",
                "LockstepFormats", "LockstepLogging", .product(name: "Crypto", package: "swift-crypto"),
            ]),
        .target(
            name: "LockstepEvaluation",
            dependencies: ["LockstepCheckpoints", "LockstepConfig", "LockstepModel", "LockstepData", "LockstepTokenizer"]),
        .target(
            name: "LockstepTraining",
            dependencies: [
                "LockstepModel", "LockstepOptimizer", "LockstepData", "LockstepDistributed", "LockstepTokenizer",
                "LockstepConfig", "LockstepCheckpoints", "LockstepEvaluation", "LockstepLogging",
            ]),

        // MARK: - Executables (thin: parse arguments, call the libraries)
        .executableTarget(
            name: "lockstep",
            dependencies: [
                "LockstepTraining", "LockstepConfig", "LockstepCheckpoints", "LockstepEvaluation", "LockstepLogging",
                "LockstepData", "LockstepModel", "LockstepTokenizer", "LockstepDistributed", "LockstepKernels", "LockstepFormats",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        .executableTarget(
            name: "lockstep-coordinator",
            dependencies: [
                "LockstepTraining", "LockstepDistributed", "LockstepLogging",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        .executableTarget(name: "lockstep-worker", dependencies: ["LockstepTraining", "LockstepDistributed", "LockstepLogging"]),
        .executableTarget(name: "mpi-allreduce-check", dependencies: ["LockstepDistributed"]),
        // Scenarios for the LockstepDistributed tests, each run under mpirun: `lockstep-distributed-check <scenario>`.
        .executableTarget(
            name: "lockstep-distributed-check", dependencies: ["LockstepDistributed", "LockstepTraining", "LockstepRandom"]),

        // MARK: - Tests
        .target(
            name: "LockstepTestSupport", dependencies: ["LockstepDistributed"], path: "Tests/LockstepTestSupport"),
        .testTarget(
            name: "LockstepKernelsTests",
            dependencies: [
                "LockstepKernels", "LockstepTestSupport", .product(name: "RealModule", package: "swift-numerics"),
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
                "LockstepLogging", "LockstepOptimizer", "LockstepTestSupport",
            ]),
    ]
)
