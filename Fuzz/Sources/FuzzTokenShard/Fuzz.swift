import Foundation
import FuzzSupport
import LockstepData

/// Token shards in both layouts (llm.c with its header, nanoGPT headerless), with and without the vocabulary
/// check, then reads of the tokens a shard says it has.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTokenShard(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let url = FuzzFiles.write(UnsafeBufferPointer(start: data, count: size), to: "train_000.bin")
    for format in ShardFormat.allCases {
        for vocabulary in [nil, 257, 50_257] as [Int?] {
            guard let shard = try? TokenShard(url: url, format: format, vocabularySize: vocabulary) else { continue }
            let n = min(shard.count, 4096)
            var tokens = [Int32](repeating: 0, count: max(n, 1))
            if n > 0 { tokens.withUnsafeMutableBufferPointer { shard.copyTokens(from: shard.count - n, count: n, into: $0.baseAddress!) } }
        }
        // The dataset over the shard: every window readable.
        if let dataset = try? TokenWindowDataset(files: [url], format: format, sequenceLength: 8, vocabularySize: 50_257) {
            var inputs = [Int32](repeating: 0, count: 8), targets = inputs
            for window in 0..<min(dataset.windowCount, 64) { dataset.readWindow(window, inputs: &inputs, targets: &targets) }
        }
    }
    return 0
}

/// The entry point SwiftPM links for this executable (see `runFuzzer`).
@_cdecl("FuzzTokenShard_main")
public func fuzzTokenShardMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    runFuzzer(argc, argv, fuzzTokenShard)
}
