import Foundation
import FuzzSupport
import LockstepFormats

/// The safetensors reader, from memory and from a file, then every accessor on every tensor it accepted.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSafeTensors(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Data(bytes: data, count: size)
    guard let file = try? SafeTensorsFile.parse(bytes, file: "fuzz.safetensors") else { return 0 }
    for tensor in file.tensors {
        _ = tensor.elementCount
        _ = try? file.floats(named: tensor.name)
        _ = try? file.int32s(named: tensor.name)
        _ = try? file.int64s(named: tensor.name)
        var buffer = [Float](repeating: 0, count: min(tensor.elementCount, 1 << 16))
        buffer.withUnsafeMutableBufferPointer { _ = try? file.copyFloats(named: tensor.name, into: $0) }
    }
    if size < 1 << 16 {
        _ = try? SafeTensorsFile.read(FuzzFiles.write(bytes, to: "model.safetensors"))
    }
    return 0
}

/// The entry point SwiftPM links for this executable (see `runFuzzer`).
@_cdecl("FuzzSafeTensors_main")
public func fuzzSafeTensorsMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    runFuzzer(argc, argv, fuzzSafeTensors)
}
