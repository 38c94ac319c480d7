// swift-tools-version:6.0
// libFuzzer targets for Lockstep's readers of user input. Not part of the main package, so that its
// `swift build` and `swift test` never need the fuzzer flags; `scripts/fuzz.sh` builds these with
// `-sanitize=fuzzer,address` (instrumenting the main package's modules too) and runs each for a bounded time.
import PackageDescription

let fuzzTarget: (String, [Target.Dependency]) -> Target = { name, dependencies in
    // No `main`: libFuzzer supplies it and calls `LLVMFuzzerTestOneInput`.
    .executableTarget(
        name: name, dependencies: ["FuzzSupport"] + dependencies,
        swiftSettings: [.unsafeFlags(["-parse-as-library"])])
}

let package = Package(
    name: "LockstepFuzz",
    dependencies: [.package(name: "Lockstep", path: "..")],
    targets: [
        .target(name: "FuzzSupport"),
        fuzzTarget("FuzzSafeTensors", [.product(name: "LockstepTraining", package: "Lockstep")]),
        fuzzTarget("FuzzTokenShard", [.product(name: "LockstepTraining", package: "Lockstep")]),
        fuzzTarget("FuzzTokenizer", [.product(name: "LockstepTraining", package: "Lockstep")]),
        fuzzTarget("FuzzLabeledFile", [.product(name: "LockstepTraining", package: "Lockstep")]),
        fuzzTarget("FuzzConfig", [.product(name: "LockstepTraining", package: "Lockstep")]),
    ]
)
