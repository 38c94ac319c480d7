import Foundation

/// Scratch files for readers that take a path: one folder per fuzzing process in /dev/shm (memory) when it
/// exists, rewritten for every input.
public enum FuzzFiles {
    public static let folder: URL = {
        let base = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
        let url = URL(fileURLWithPath: base).appendingPathComponent("lockstep-fuzz-\(getpid())")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }()

    /// Writes `bytes` to `name` in the scratch folder and returns its URL.
    public static func write(_ bytes: some DataProtocol, to name: String) -> URL {
        let url = folder.appendingPathComponent(name)
        FileManager.default.createFile(atPath: url.path, contents: Data(bytes))
        return url
    }

    /// The input split at the first zero byte: (before, after); after is empty when there is none.
    public static func split(_ bytes: UnsafeBufferPointer<UInt8>) -> (ArraySlice<UInt8>, ArraySlice<UInt8>) {
        let array = Array(bytes)
        guard let zero = array.firstIndex(of: 0) else { return (array[...], []) }
        return (array[..<zero], array[(zero + 1)...])
    }
}

/// libFuzzer's entry for programs that have their own `main` (LLVM 11+): runs the fuzzer with `callback`.
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt
) -> CInt

/// SwiftPM links an executable target's entry point as `<Module>_main` (so that tests can link executables),
/// which leaves libFuzzer's own `main` out: each target's `<Module>_main` calls this with its callback.
public func runFuzzer(
    _ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt
) -> CInt {
    var count = argc
    var arguments: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = argv
    return LLVMFuzzerRunDriver(&count, &arguments, callback)
}
