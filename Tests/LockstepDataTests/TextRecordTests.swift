import Foundation
import Testing
@testable import LockstepData

/// `LabeledDataset.loadTexts`: the same parsing as labeled files, with the label read only where a row has it.
@Suite struct TextRecordTests {
    @Test func labelsAreOptionalPerRow() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let tsv = try folder.write("mixed.tsv", "only text\n\"quoted\ttab\"\tpos\n")
        #expect(try LabeledDataset.loadTexts(file: tsv, options: LabeledFileOptions(format: .tsv)) == [
            TextRecord(text: "only text", label: nil, line: 1),
            TextRecord(text: "quoted\ttab", label: "pos", line: 2),
        ])

        let jsonl = try folder.write("texts.jsonl", "{\"text\": \"a\"}\n\n{\"text\": \"b\", \"label\": 2}\n")
        #expect(try LabeledDataset.loadTexts(file: jsonl, options: LabeledFileOptions(format: .jsonl)) == [
            TextRecord(text: "a", label: nil, line: 1),
            TextRecord(text: "b", label: "2", line: 3),
        ])

        // A header without the label column: no labels, not an error.
        let csv = try folder.write("texts.csv", "id,text\n1,\"x, y\"\n")
        let options = LabeledFileOptions(format: .csv, textField: .name("text"), labelField: .name("label"), hasHeader: true)
        #expect(try LabeledDataset.loadTexts(file: csv, options: options) == [TextRecord(text: "x, y", label: nil, line: 2)])
        // Training still requires it.
        #expect(throws: DataError.self) { try LabeledDataset.load(file: csv, options: options) }
    }

    @Test func aMissingTextFieldNamesTheFileAndLine() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let jsonl = try folder.write("bad.jsonl", "{\"text\": \"a\"}\n{\"sentence\": \"b\"}\n")
        #expect(throws: DataError.malformedRow(path: jsonl.path, line: 2, reason: "missing field 'text'")) {
            try LabeledDataset.loadTexts(file: jsonl, options: LabeledFileOptions(format: .jsonl))
        }
        let tsv = try folder.write("bad.tsv", "a\tb\tc\nx\n")
        #expect(throws: DataError.malformedRow(
            path: tsv.path, line: 2, reason: "missing field column 2: expected at least 3 fields, found 1")) {
            try LabeledDataset.loadTexts(file: tsv, options: LabeledFileOptions(format: .tsv, textField: .index(2)))
        }
    }
}
