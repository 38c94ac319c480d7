import Foundation
import LockstepTestSupport
import Testing
@testable import LockstepData

@Suite struct LabeledDatasetTests {
    /// The error thrown by `body`, as text, or nil when it does not throw.
    private func message(_ body: () throws -> Void) -> String? {
        do { try body() } catch { return "\(error)" }
        return nil
    }

    @Test func csvFollowsRFC4180Quoting() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let url = try folder.write("fixture.csv", #"""
            id,text,label
            1,"hello, world",pos
            2,"she said ""hi""",neg\#r
            3,"line one
            line two",pos

            4,plain "unquoted" text,neutral
            5,"",neg
            """#)
        let options = LabeledFileOptions(format: .csv, textField: .name("text"), labelField: .name("label"), hasHeader: true)
        let data = try LabeledDataset.load(file: url, options: options)
        #expect(data.labels.names == ["neg", "neutral", "pos"])
        #expect(data.examples == [
            LabeledExample(text: "hello, world", label: 2),
            LabeledExample(text: "she said \"hi\"", label: 0),
            LabeledExample(text: "line one\nline two", label: 2),
            LabeledExample(text: "plain \"unquoted\" text", label: 1),
            LabeledExample(text: "", label: 0),
        ])
        #expect(try LabeledFileFormat(inferredFrom: url) == .csv)
    }

    @Test func tsvSelectsColumnsByIndexAndQuotesLikeCSV() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let url = try folder.write("fixture.tsv", "World\t\"quoted \"\"tab\"\"\there\"\nSports\tplain text \n")
        let options = LabeledFileOptions(format: .tsv, textField: .index(1), labelField: .index(0))
        let data = try LabeledDataset.load(file: url, options: options, labels: LabelMap(names: ["World", "Sports"]))
        #expect(data.examples == [
            LabeledExample(text: "quoted \"tab\"\there", label: 0),
            LabeledExample(text: "plain text ", label: 1),
        ])
    }

    @Test func jsonlReadsKeysAndIntegerLabels() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let url = try folder.write("fixture.jsonl", """
            {"review": "good film", "stars": 10}

            {"review": "bad \\"film\\"", "stars": 2, "extra": true}
            {"review": "ok", "stars": 1}
            """)
        let options = LabeledFileOptions(format: .jsonl, textField: .name("review"), labelField: .name("stars"))
        let data = try LabeledDataset.load(file: url, options: options)
        // Integer names sort numerically.
        #expect(data.labels.names == ["1", "2", "10"])
        #expect(data.examples == [
            LabeledExample(text: "good film", label: 2),
            LabeledExample(text: "bad \"film\"", label: 1),
            LabeledExample(text: "ok", label: 0),
        ])
        #expect(LabeledFileOptions(format: .jsonl).textField == .name("text"))
    }

    /// Issue 16: "1" and "01" are the same number, and their order came from iterating a `Set`, which differs
    /// between processes (and between Set instances): two workers could give them different ids. Now the
    /// order is total: by number, then by scalars, whatever order the rows come in.
    @Test func labelIdsAreTheSameWhateverTheRowOrderAndSetOrder() throws {
        let names = ["1", "01", "10", "2", "001", "02", "-1"]
        var random = TestRandom(seed: 16)
        for _ in 0..<200 {
            var shuffled = names + names
            for i in shuffled.indices.reversed() where i > 0 { shuffled.swapAt(i, Int(random.next() % UInt64(i + 1))) }
            #expect(LabelMap.sorted(shuffled).names == ["-1", "001", "01", "1", "02", "2", "10"])
        }
        #expect(LabelMap.sorted(["b", "a", "10", "9"]).names == ["10", "9", "a", "b"])
        // Through a file, as training reads it.
        let directory = try TemporaryDirectory()
        let file = directory.url.appendingPathComponent("labels.jsonl")
        try (0..<30).map { #"{"text": "row \#($0)", "label": "\#(["01", "1", "2"][$0 % 3])"}"# }.joined(separator: "\n")
            .write(to: file, atomically: true, encoding: .utf8)
        for _ in 0..<20 {
            let dataset = try LabeledDataset.load(file: file, options: LabeledFileOptions(format: .jsonl))
            #expect(dataset.labels.names == ["01", "1", "2"])
            #expect(dataset.examples[1].label == 1)
        }
    }

    @Test func badRowsGiveErrorsNamingFileAndLine() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let tsv = LabeledFileOptions(format: .tsv)
        let csv = LabeledFileOptions(format: .csv)

        let missing = try folder.write("missing.tsv", "a\t0\n\"two\nlines\"\t1\nonly text\n")
        let missingField = try #require(message { _ = try LabeledDataset.load(file: missing, options: tsv) })
        #expect(missingField.contains("\(missing.path):4:") && missingField.contains("missing field column 1"))

        let unknown = try folder.write("unknown.tsv", "a\t0\nb\t1\nc\t2\n")
        let unknownLabel = try #require(message {
            _ = try LabeledDataset.load(file: unknown, options: tsv, labels: LabelMap(names: ["0", "1"]))
        })
        #expect(unknownLabel.contains("\(unknown.path):3:") && unknownLabel.contains("unknown label '2'"))

        let quote = try folder.write("quote.csv", "text,label\n\"fine\",1\n\"broken\"x,0\n")
        let badQuote = try #require(message { _ = try LabeledDataset.load(file: quote, options: csv) })
        #expect(badQuote.contains("\(quote.path):3:") && badQuote.contains("after a closing quote"))

        let open = try folder.write("open.csv", "ok,1\n\"never closed,0\nmore,1\n")
        let unterminated = try #require(message { _ = try LabeledDataset.load(file: open, options: csv) })
        #expect(unterminated.contains("\(open.path):2:") && unterminated.contains("no closing quote"))

        let header = try folder.write("header.csv", "sentence,label\nx,1\n")
        let noColumn = try #require(message {
            _ = try LabeledDataset.load(
                file: header, options: LabeledFileOptions(format: .csv, textField: .name("text"), hasHeader: true))
        })
        #expect(noColumn.contains("\(header.path):1:") && noColumn.contains("no column 'text'"))

        let absent = folder.file("absent.tsv")
        #expect(throws: DataError.fileNotFound(path: absent.path)) { try LabeledDataset.load(file: absent, options: tsv) }

        let json = try folder.write("bad.jsonl", "{\"text\": \"a\", \"label\": \"x\"}\n{\"text\": \"b\"}\n{oops\n")
        let jsonMissing = try #require(message { _ = try LabeledDataset.load(file: json, options: LabeledFileOptions(format: .jsonl)) })
        #expect(jsonMissing.contains("\(json.path):2:") && jsonMissing.contains("missing field 'label'"))
        let notJSON = try folder.write("bad2.jsonl", "{\"text\": \"a\", \"label\": \"x\"}\n{oops\n")
        #expect(throws: DataError.malformedRow(path: notJSON.path, line: 2, reason: "not valid JSON")) {
            try LabeledDataset.load(file: notJSON, options: LabeledFileOptions(format: .jsonl))
        }
    }

    @Test func invalidUTF8IsAnErrorUnlessReplaced() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        for (format, separator) in [(LabeledFileFormat.tsv, "\t"), (.csv, ","), (.jsonl, "")] {
            let url = folder.file("utf8.\(format.rawValue)")
            var bytes: [UInt8]
            if format == .jsonl {
                bytes = Array("{\"text\": \"fine\", \"label\": \"a\"}\n{\"text\": \"bad ".utf8) + [0xFF] + Array("\", \"label\": \"b\"}\n".utf8)
            } else {
                bytes = Array("fine\(separator)a\nbad ".utf8) + [0xFF] + Array("\(separator)b\n".utf8)
            }
            try Data(bytes).write(to: url)
            #expect(throws: DataError.invalidUTF8(path: url.path, line: 2)) {
                try LabeledDataset.load(file: url, options: LabeledFileOptions(format: format))
            }
            let replaced = try LabeledDataset.load(file: url, options: LabeledFileOptions(format: format, invalidUTF8: .replace))
            #expect(replaced.examples[1].text == "bad \u{FFFD}")
        }
    }

    // MARK: - The project's shared corpora

    private func loadShared(_ folder: String, _ name: String, _ options: LabeledFileOptions, labels: LabelMap? = nil) throws -> LabeledDataset {
        let url = SharedFiles.data.appendingPathComponent(folder).appendingPathComponent(name)
        try TestEnvironment.require(.shared(url))
        return try LabeledDataset.load(file: url, options: options, labels: labels)
    }

    /// SST-2 files have a `sentence<TAB>label` header; row counts are `wc -l` minus the header.
    @Test(.requires(.shared(SharedFiles.data.appendingPathComponent("sst2/train.tsv")))) func readsSharedSST2() throws {
        let options = LabeledFileOptions(format: .tsv, textField: .name("sentence"), labelField: .name("label"), hasHeader: true)
        let train = try loadShared("sst2", "train.tsv", options)
        #expect(train.examples.count == 60_614)
        #expect(train.labels.names == ["0", "1"])
        #expect(train.examples.filter { $0.label == 1 }.count == 33_828)
        #expect(train.examples[0] == LabeledExample(text: "when are bears bears and ", label: 1))
        let dev = try #require(try loadShared("sst2", "dev.tsv", options, labels: train.labels))
        #expect(dev.examples.count == 6_735)
        #expect(dev.examples[0] == LabeledExample(text: "the expressive power of the camera ", label: 1))
        let test = try #require(try loadShared("sst2", "test.tsv", options, labels: train.labels))
        #expect(test.examples.count == 872)
    }

    /// AG News files have no header and quote fields that contain quotes; row counts are `wc -l`.
    @Test(.requires(.shared(SharedFiles.data.appendingPathComponent("agnews/dev.tsv")))) func readsSharedAGNews() throws {
        let options = LabeledFileOptions(format: .tsv)
        let dev = try loadShared("agnews", "dev.tsv", options)
        #expect(dev.examples.count == 10_001)
        #expect(dev.labels.names == ["Business", "Sci/Tech", "Sports", "World"])
        #expect((0..<4).map { label in dev.examples.filter { $0.label == label }.count } == [2_496, 2_538, 2_458, 2_509])
        #expect(dev.examples.contains(LabeledExample(
            text: "Iraqi interim Prime Minister Ayad Allawi said on Tuesday \"major neglect\" by U.S.-led forces led to the murder of 49 Iraqi army recruits by insurgents this weekend.",
            label: 3)))
        // 397 rows are quoted; only the 4 whose text itself starts with a quote (`"""...`) keep one.
        #expect(dev.examples.filter { $0.text.hasPrefix("\"") }.count == 4)
        #expect(dev.examples.contains { $0.text.hasPrefix("\"Big Blue\" may also earn the nickname \"Big Linux Supporter\"") })
        let test = try #require(try loadShared("agnews", "test.tsv", options, labels: dev.labels))
        #expect(test.examples.count == 7_600)
    }
}
