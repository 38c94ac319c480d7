import Foundation
import FuzzSupport
import LockstepConfig

/// The config loader: YAML up to the first zero byte, then `--set key=value` overrides, one per line.
/// A config that loads also gets its derived numbers (accumulation steps for several worker counts).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfig(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let (yaml, rest) = FuzzFiles.split(UnsafeBufferPointer(start: data, count: size))
    let overrides = String(decoding: rest, as: UTF8.self).split(separator: "\n").map(String.init)
    guard let config = try? RunConfig(yaml: String(decoding: yaml, as: UTF8.self), file: "fuzz.yaml", overrides: overrides)
    else { return 0 }
    for workers in [1, 2, 3, 8] { _ = try? config.accumulationSteps(workers: workers) }
    _ = config.globalBatchWindows
    return 0
}

/// The entry point SwiftPM links for this executable (see `runFuzzer`).
@_cdecl("FuzzConfig_main")
public func fuzzConfigMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    runFuzzer(argc, argv, fuzzConfig)
}
