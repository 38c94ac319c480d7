import Foundation
import FuzzSupport
import LockstepTokenizer

/// The tokenizer loader: the input up to its first zero byte is vocab.json, the rest merges.txt. A tokenizer
/// that loads then encodes and decodes a fixed text and its own merges.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTokenizer(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let (vocabulary, merges) = FuzzFiles.split(UnsafeBufferPointer(start: data, count: size))
    _ = FuzzFiles.write(vocabulary, to: "vocab.json")
    _ = FuzzFiles.write(merges, to: "merges.txt")
    guard let tokenizer = try? BPETokenizer.load(directory: FuzzFiles.folder) else { return 0 }
    let text = "Hello, world! It's 2026 — naïve café 🙂<|endoftext|>" + String(decoding: merges.prefix(256), as: UTF8.self)
    let ids = tokenizer.encode(text)
    _ = tokenizer.decode(ids)
    return 0
}

/// The entry point SwiftPM links for this executable (see `runFuzzer`).
@_cdecl("FuzzTokenizer_main")
public func fuzzTokenizerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    runFuzzer(argc, argv, fuzzTokenizer)
}
