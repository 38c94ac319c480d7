import Foundation
import FuzzSupport
import LockstepData

/// The labeled-file readers (TSV, CSV, JSONL). The first byte picks the format, the header flag, how invalid
/// UTF-8 is handled and whether fields are named or numbered; the rest is the file.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzLabeledFile(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let choice = data[0]
    let formats: [LabeledFileFormat] = [.tsv, .csv, .jsonl]
    let format = formats[Int(choice % 3)]
    let named = choice & 0x10 != 0
    let options = LabeledFileOptions(
        format: format,
        textField: named ? .name(format == .jsonl ? "text" : "sentence") : .index(Int(choice >> 6)),
        labelField: named ? .name("label") : .index(1),
        hasHeader: choice & 0x04 != 0 || (named && format != .jsonl),
        invalidUTF8: choice & 0x08 != 0 ? .replace : .error)
    let url = FuzzFiles.write(UnsafeBufferPointer(start: data + 1, count: size - 1), to: "data.\(format.rawValue)")
    if let dataset = try? LabeledDataset.load(file: url, options: options) {
        _ = dataset.labels.names.map { dataset.labels.id(of: $0) }
    }
    _ = try? LabeledDataset.loadTexts(file: url, options: options)
    _ = try? LabeledDataset.load(file: url, options: options, labels: LabelMap(names: ["0", "1"]))
    return 0
}

/// The entry point SwiftPM links for this executable (see `runFuzzer`).
@_cdecl("FuzzLabeledFile_main")
public func fuzzLabeledFileMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    runFuzzer(argc, argv, fuzzLabeledFile)
}
