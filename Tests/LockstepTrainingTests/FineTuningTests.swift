import Foundation
import LockstepData
import LockstepFormats
import LockstepModel
import LockstepTestSupport
import LockstepTokenizer
import Testing

@testable import LockstepTraining
import LockstepConfig
import LockstepLogging
import LockstepCheckpoints
import LockstepEvaluation

/// Fine-tuning a classifier end to end: config, per-tensor learning rates, training from scratch and from a
/// pretrained checkpoint, dev metrics, the best checkpoint, early stopping, resume over MPI, bad input.
@Suite("Fine-tuning", .serialized)
struct FineTuningTests {
    /// A labeled TSV (SST-2's layout: header `sentence\tlabel`) whose label is told by the last word, which a
    /// tiny byte-level model learns in a few dozen steps.
    static func writeLabeledFile(_ url: URL, rows: Int, seed: UInt64) throws {
        var random = TestRandom(seed: seed)
        let filler = ["the", "film", "was", "a", "story", "of", "two", "friends", "and", "it"]
        let cue = [["dull", "awful", "poor"], ["great", "fine", "fun"]]
        var text = "sentence\tlabel\n"
        for _ in 0..<rows {
            let label = Int(random.next() % 2)
            let words = (0..<(2 + Int(random.next() % 4))).map { _ in filler[Int(random.next() % 10)] }
            text += (words + [cue[label][Int(random.next() % 3)]]).joined(separator: " ") + "\t\(label)\n"
        }
        try text.write(to: url, atomically: true, encoding: .utf8)
    }

    static func setUp(_ directory: URL) throws {
        try writeLabeledFile(directory.appendingPathComponent("train.tsv"), rows: 400, seed: 1)
        try writeLabeledFile(directory.appendingPathComponent("dev.tsv"), rows: 60, seed: 2)
    }

    static let configText = """
        task: classification
        model: {context_length: 32, layers: 2, heads: 2, channels: 32, seed: 5}
        data: {train: train.tsv, validation: dev.tsv, seed: 3}
        training: {max_steps: 40, sequence_length: 32, micro_batch_size: 4, global_batch_size: 16}
        schedule: {kind: cosine, learning_rate: 3.0e-3, warmup_steps: 4}
        evaluation: {every: 10}
        output: {directory: runs/ft, log_every: 10, tensorboard: false}
        classification: {text_field: sentence, label_field: label, metric: accuracy}
        """

    static func config(_ directory: URL, _ overrides: [String] = []) throws -> RunConfig {
        try RunConfig(yaml: configText, file: "ft.yaml", overrides: overrides.map {
            $0.replacingOccurrences(of: "DIR", with: directory.path)
        } + ["data.train=\(directory.path)/train.tsv", "data.validation=\(directory.path)/dev.tsv",
             "output.directory=\(directory.path)/runs/ft"])
    }

    /// What `lockstep train` does with one worker.
    static func train(_ config: RunConfig) throws -> RunSummary {
        let tokenizer = try RunSetup.tokenizer(config)
        let modelConfig = try RunSetup.modelConfig(config, tokenizer: tokenizer)
        let replica = try RunSetup.replica(config, modelConfig: modelConfig, group: LoneReplica())
        return try Coordinator(
            config: config, link: LocalReplicaLink(replica: replica), modelConfig: modelConfig, tokenizer: tokenizer,
            console: ProgressReporter(output: FileHandle(forWritingAtPath: "/dev/null")!)
        ).run()
    }

    // MARK: - Config

    @Test func classificationSectionIsReadAndChecked() throws {
        let config = try RunConfig(
            yaml: Self.configText, file: "ft.yaml",
            overrides: ["classification.class_weights=balanced", "classification.layer_decay=0.8",
                        "classification.head_learning_rate=0.01", "classification.patience=3"])
        let settings = try #require(config.classification)
        #expect(config.task == .classification)
        #expect(settings.classWeights == .balanced)
        #expect(settings.layerDecay == 0.8 && settings.headLearningRate == 0.01 && settings.patience == 3)
        #expect(settings.header, "a field given by name implies a header row")
        #expect(settings.textField == .name("sentence"))
        #expect(config.globalBatchWindows == 16)

        func error(_ yaml: String, _ overrides: [String] = []) -> String {
            do {
                _ = try RunConfig(yaml: yaml, file: "ft.yaml", overrides: overrides)
                return ""
            } catch { return "\(error)" }
        }
        #expect(error(Self.configText, ["task=language_model"]).contains("classification: this section needs task: classification"))
        #expect(error(Self.configText, ["classification.layer_decay=1.5"]).contains("classification.layer_decay"))
        #expect(error(Self.configText, ["classification.class_weights=heavy"]).contains("classification.class_weights"))
        #expect(error(Self.configText, ["classification.metric=speed"]).contains("classification.metric"))
        #expect(error(Self.configText.replacingOccurrences(of: ", validation: dev.tsv", with: ""),
                      ["classification.patience=2"]).contains("early stopping needs a dev set"))
        #expect(error(Self.configText, ["training.global_batch_tokens=512"]).contains("either global_batch_size"))
        #expect(error(Self.configText, ["classification.echo=twice"]).contains("classification.echo"))
        #expect(!settings.echo, "echo is off unless asked for")
        #expect(try RunConfig(yaml: Self.configText, overrides: ["classification.echo=true"]).classification?.echo == true)

        // A checkpoint's stored config from before `echo` existed reads as off.
        var stored = try #require(
            JSONSerialization.jsonObject(with: JSONEncoder().encode(settings)) as? [String: Any])
        stored["echo"] = nil
        let decoded = try JSONDecoder().decode(
            RunConfig.ClassificationSettings.self, from: JSONSerialization.data(withJSONObject: stored))
        #expect(decoded == settings)
    }

    @Test func learningRatesFollowHeadLayerDecayAndFreezing() throws {
        let directory = try TemporaryDirectory()
        try Self.setUp(directory.url)
        let layout = ParameterLayout(config: GPTConfig(
            vocabularySize: 300, contextLength: 32, layerCount: 2, headCount: 2, channels: 32, labelCount: 2))
        func scales(_ overrides: [String]) throws -> [String: Float] {
            let scale = RunSetup.learningRateScale(try Self.config(directory.url, overrides), layout: layout)
            return Dictionary(uniqueKeysWithValues: layout.tensors.map { ($0.name, scale($0)) })
        }
        let plain = try scales([])
        #expect(plain.values.allSatisfy { $0 == 1 })
        let decayed = try scales(["classification.layer_decay=0.5", "classification.head_learning_rate=6e-3"])
        #expect(decayed["score.weight"] == 2)
        #expect(decayed["transformer.ln_f.weight"] == 1)
        #expect(decayed["transformer.h.1.mlp.c_fc.weight"] == 0.5)
        #expect(decayed["transformer.h.0.attn.c_attn.weight"] == 0.25)
        #expect(decayed["transformer.wte.weight"] == 0.125 && decayed["transformer.wpe.weight"] == 0.125)
        let frozen = try scales(["classification.freeze_backbone=true"])
        #expect(frozen["score.weight"] == 1)
        #expect(frozen.filter { $0.key != "score.weight" }.values.allSatisfy { $0 == 0 })
    }

    // MARK: - Training

    @Test func fineTuningLearnsKeepsTheBestAndCalibrates() throws {
        let directory = try TemporaryDirectory()
        try Self.setUp(directory.url)
        let config = try Self.config(directory.url, ["classification.class_weights=balanced"])
        let summary = try Self.train(config)
        let run = directory.url.appendingPathComponent("runs/ft")

        let evaluations = try MetricsLog.read(url: run.appendingPathComponent("metrics.jsonl"))
            .filter { $0["kind"] == .string("eval") }
        #expect(evaluations.count == 4)
        let accuracies = evaluations.compactMap { $0["accuracy"]?.doubleValue }
        let best = try #require(summary.best?.bestValue)
        #expect(best >= 0.9, "dev accuracies \(accuracies)")
        #expect(best == accuracies.max())
        #expect(summary.line.contains("best dev accuracy"))
        #expect(evaluations.allSatisfy { $0["precision/0"] != nil && $0["recall/1"] != nil })
        let lastReport = try #require(JSONSerialization.jsonObject(
            with: Data(contentsOf: run.appendingPathComponent("evaluations/step-0000040.json"))) as? [String: Any])
        let matrix = try #require(lastReport["confusion_matrix"] as? [[Int]])
        #expect(matrix.flatMap { $0 }.reduce(0, +) == 60)
        #expect(lastReport["accuracy"] as? Double == accuracies.last)

        // The best checkpoint is kept, and model/ holds its parameters, labels and temperature.
        let checkpoints = CheckpointDirectory(root: run.appendingPathComponent("checkpoints"))
        let bestCheckpoint = try #require(checkpoints.best)
        let bestState = try TrainingCheckpoint.readState(bestCheckpoint)
        #expect(bestState.step == summary.best?.bestStep)
        #expect(bestState.labelNames == ["0", "1"])
        let temperature = try #require(bestState.temperature)
        #expect(temperature > 0 && temperature != 1)
        #expect(bestState.selection?.latest["accuracy"] == best)

        let model = run.appendingPathComponent("model")
        let exported = try SafeTensorsFile.read(model.appendingPathComponent("model.safetensors"))
        let saved = try SafeTensorsFile.read(bestCheckpoint.appendingPathComponent("model.safetensors"))
        let name = "score.weight"
        #expect(try exported.floats(named: name) == saved.floats(named: name))
        let json = try #require(
            JSONSerialization.jsonObject(with: Data(contentsOf: model.appendingPathComponent("config.json"))) as? [String: Any])
        #expect(json["id2label"] as? [String: String] == ["0": "0", "1": "1"])
        let written = try #require(json["calibration_temperature"] as? Double)
        #expect(abs(written - temperature) <= 1e-12 * temperature)
        #expect(json["pad_token_id"] as? Int == 256)
        #expect(FileManager.default.fileExists(atPath: model.appendingPathComponent("vocab.json").path))

        // What evaluate and predict load from model/ scores the dev set as training's best evaluation did.
        let classifier = try TrainedClassifier(contentsOf: model)
        #expect(classifier.labelNames == ["0", "1"] && classifier.temperature == written)
        let dev = try config.labeledSet(pattern: try #require(config.data.validation), labels: LabelMap(names: classifier.labelNames))
        let logits = try classifier.logits(texts: dev.examples.map(\.text), sequenceLength: 32, batchSize: 7)
        let report = try ClassificationReport.compute(
            logits: logits.map(Double.init), labels: dev.examples.map { Int($0.label) }, labelNames: classifier.labelNames)
        #expect(report.accuracy == best)
        #expect(abs(report.negativeLogLikelihood - (bestState.selection?.latest["loss"] ?? 0)) < 1e-5)
    }

    @Test func frozenBackboneFromAPretrainedCheckpointTrainsOnlyTheHead() throws {
        let directory = try TemporaryDirectory()
        try Self.setUp(directory.url)
        // A language model pretrained for a few steps on the same sentences.
        _ = try SingleProcessTrainingTests.prepareCorpus(in: directory.url)
        let pretrain = try SingleProcessTrainingTests.config(
            directory: directory.url, extra: "checkpoint: {every: 0}")
        var lmConfig = pretrain
        lmConfig.training.maxSteps = 3
        lmConfig.schedule.totalSteps = 3
        lmConfig.output.directory = directory.url.appendingPathComponent("runs/lm").path
        let tokenizer = try RunSetup.tokenizer(lmConfig)
        let lmModel = try RunSetup.modelConfig(lmConfig, tokenizer: tokenizer)
        let lmReplica = try RunSetup.replica(lmConfig, modelConfig: lmModel, group: LoneReplica())
        _ = try Coordinator(
            config: lmConfig, link: LocalReplicaLink(replica: lmReplica), modelConfig: lmModel, tokenizer: tokenizer,
            console: ProgressReporter(output: FileHandle(forWritingAtPath: "/dev/null")!)
        ).run()
        let lmCheckpoints = directory.url.appendingPathComponent("runs/lm/checkpoints")

        let config = try Self.config(directory.url, [
            "model.init_from=\(lmCheckpoints.path)", "classification.freeze_backbone=true", "training.max_steps=6",
            "evaluation.every=3",
        ])
        #expect(config.data.tokenizer == lmCheckpoints.path, "the tokenizer defaults to init_from's")
        _ = try Self.train(config)
        let before = try SafeTensorsFile.read(
            try #require(RunSetup.checkpointDirectory(lmCheckpoints)).appendingPathComponent("model.safetensors"))
        let after = try SafeTensorsFile.read(directory.url.appendingPathComponent("runs/ft/model/model.safetensors"))
        for tensor in before.tensors {
            #expect(try after.floats(named: tensor.name) == before.floats(named: tensor.name), "\(tensor.name) changed")
        }
        let head = try after.floats(named: "score.weight")
        #expect(head.count == 2 * 32 && head.contains { $0 != 0 })
    }

    @Test func earlyStoppingEndsTheRunAfterPatienceRunsOut() throws {
        let directory = try TemporaryDirectory()
        try Self.setUp(directory.url)
        // So small a learning rate leaves every prediction, hence the accuracy, as at the first evaluation.
        let config = try Self.config(directory.url, [
            "schedule.learning_rate=1e-12", "evaluation.every=5", "classification.patience=2",
        ])
        let summary = try Self.train(config)
        #expect(summary.stopReason == .earlyStopping)
        #expect(summary.steps == 15)
        #expect(summary.best?.bestStep == 5)
        let checkpoints = CheckpointDirectory(root: directory.url.appendingPathComponent("runs/ft/checkpoints"))
        #expect(try TrainingCheckpoint.readState(try #require(checkpoints.newestValid())).step == 15)
    }

    @Test func eachStepsRowsAreOrderedByLengthAndKeepTheirLabels() throws {
        let directory = try TemporaryDirectory()
        try Self.setUp(directory.url)
        let config = try Self.config(directory.url)
        let tokenizer = try RunSetup.tokenizer(config)
        let modelConfig = try RunSetup.modelConfig(config, tokenizer: tokenizer)
        let task = try RunSetup.classificationTask(
            config, model: try RunSetup.model(config, modelConfig: modelConfig), group: LoneReplica())
        let rows = task.stream.localBatchSize, time = task.time
        for _ in 0..<3 {
            let position = task.cursor.position, epoch = task.cursor.epoch
            task.loadNextBatch()
            let lengths = Array(task.lengths)
            #expect(lengths == lengths.sorted())
            // The same rows as the stream's order gives, each with its own tokens and label.
            var loaded = (0..<rows).map { row in
                "\(task.tokens[row * time..<(row + 1) * time].map { $0 }) \(task.labels[row])"
            }
            var expected = (0..<rows).map { b in
                let example = task.stream.examples[task.stream.exampleIndex(atPosition: position + b, epoch: epoch)]
                var row = [Int32](repeating: 0, count: time)
                _ = LabeledBatchStream.encode(
                    example.text, tokenize: { tokenizer.encode($0) }, sequenceLength: time, padID: tokenizer.padID,
                    into: &row)
                return "\(row) \(example.label)"
            }
            loaded.sort()
            expected.sort()
            #expect(loaded == expected)
        }
    }

    @Test func lengthOrderedMicroBatchesTrainAsOneBatch() throws {
        let directory = try TemporaryDirectory()
        try Self.setUp(directory.url)
        func losses(microBatch: Int) throws -> [Double] {
            var config = try Self.config(directory.url, [
                "training.micro_batch_size=\(microBatch)", "training.max_steps=20", "evaluation.every=20",
                "output.log_every=1",
            ])
            config.output.directory = directory.url.appendingPathComponent("runs/micro-\(microBatch)").path
            _ = try Self.train(config)
            return try MetricsLog.read(url: directory.url.appendingPathComponent("runs/micro-\(microBatch)/metrics.jsonl"))
                .filter { $0["kind"] == .string("train") }.compactMap { $0["loss"]?.doubleValue }
        }
        // 4 micro-batches of 4 length-ordered rows against one of 16: the same gradient in another summation order.
        let accumulated = try losses(microBatch: 4), whole = try losses(microBatch: 16)
        #expect(accumulated.count == 20 && whole.count == 20)
        for (a, b) in zip(accumulated, whole) { #expect(abs(a - b) <= 1e-4 * max(1, abs(b)), "\(accumulated) vs \(whole)") }
        #expect(accumulated.first != accumulated.last)
    }

    /// `classification.echo` trains exactly as the same run on a file whose texts are written twice, and the
    /// exported model says so (`echo_inputs`), so that `evaluate` and `predict` read each text twice too.
    @Test func echoTrainsAsTheTextsWrittenTwice() throws {
        let directory = try TemporaryDirectory()
        try Self.setUp(directory.url)
        for name in ["train", "dev"] {
            let lines = try String(contentsOf: directory.url.appendingPathComponent("\(name).tsv"), encoding: .utf8)
                .split(separator: "\n")
            let doubled = lines.enumerated().map { index, line -> String in
                guard index > 0, let tab = line.firstIndex(of: "\t") else { return String(line) }
                return "\(line[..<tab]) \(line[..<tab])\(line[tab...])"
            }
            try (doubled.joined(separator: "\n") + "\n").write(
                to: directory.url.appendingPathComponent("\(name)-doubled.tsv"), atomically: true, encoding: .utf8)
        }
        func train(_ name: String, echo: Bool, files: String) throws -> URL {
            var config = try Self.config(directory.url, [
                "model.context_length=96", "training.sequence_length=96", "training.max_steps=12",
                "evaluation.every=6", "classification.echo=\(echo)",
            ])
            config.data.train = directory.url.appendingPathComponent("train\(files).tsv").path
            config.data.validation = directory.url.appendingPathComponent("dev\(files).tsv").path
            config.output.directory = directory.url.appendingPathComponent("runs/\(name)").path
            _ = try Self.train(config)
            return directory.url.appendingPathComponent("runs/\(name)")
        }
        let echo = try train("echo", echo: true, files: "")
        let doubled = try train("doubled", echo: false, files: "-doubled")

        let echoWeights = try SafeTensorsFile.read(echo.appendingPathComponent("model/model.safetensors"))
        let doubledWeights = try SafeTensorsFile.read(doubled.appendingPathComponent("model/model.safetensors"))
        #expect(echoWeights.names.sorted() == doubledWeights.names.sorted())
        for name in echoWeights.names { #expect(try echoWeights.floats(named: name) == doubledWeights.floats(named: name), "\(name)") }
        func devAccuracies(_ run: URL) throws -> [Double] {
            try MetricsLog.read(url: run.appendingPathComponent("metrics.jsonl"))
                .filter { $0["kind"] == .string("eval") }.compactMap { $0["accuracy"]?.doubleValue }
        }
        #expect(try devAccuracies(echo) == devAccuracies(doubled) && devAccuracies(echo).count == 2)

        #expect(try ModelExport.echoInputs(directory: echo.appendingPathComponent("model")))
        #expect(try !ModelExport.echoInputs(directory: doubled.appendingPathComponent("model")))
        let texts = ["the film was fun", "a dull story"]
        let echoLogits = try TrainedClassifier(contentsOf: echo.appendingPathComponent("model")).logits(texts: texts)
        let doubledLogits = try TrainedClassifier(contentsOf: doubled.appendingPathComponent("model"))
            .logits(texts: texts.map { $0 + " " + $0 })
        #expect(echoLogits == doubledLogits)
    }

    @Test func badLabeledInputIsAClearError() throws {
        let directory = try TemporaryDirectory()
        try Self.setUp(directory.url)
        let dev = directory.url.appendingPathComponent("dev.tsv")
        try (String(contentsOf: dev, encoding: .utf8) + "a surprising film\tmaybe\n").write(to: dev, atomically: true, encoding: .utf8)
        let config = try Self.config(directory.url)
        let unseen = #expect(throws: (any Error).self) { try Self.train(config) }
        let message = "\(unseen!)"
        #expect(message.contains("dev.tsv") && message.contains("62") && message.contains("maybe"), "\(message)")

        let missingField = try Self.config(directory.url, ["classification.text_field=review"])
        let error = #expect(throws: (any Error).self) { try Self.train(missingField) }
        #expect("\(error!)".contains("train.tsv") && "\(error!)".contains("review"), "\(error!)")
    }

    // MARK: - Distributed

    /// Also with `training.dropout`, whose masks a resumed run must draw again exactly, and with Muon on the
    /// block matrices (the SST-2 recipe's fine-tuning), whose momentum the checkpoint must carry.
    @Test(arguments: zip([0, 0.2, 0], ["adamw", "adamw", "muon"]))
    func twoWorkersFineTuneAndResumeBitIdentical(dropout: Double, optimizer: String) throws {
        let temporary = try TemporaryDirectory()
        let directory = temporary.url
        try Self.setUp(directory)
        try (Self.configText + "\ncheckpoint: {every: 10, keep_last: 5}\n")
            .write(to: directory.appendingPathComponent("ft.yaml"), atomically: true, encoding: .utf8)
        let lockstep = DistributedTrainingTests.lockstep
        func train(_ output: String, resume: Bool = false) throws -> MPIRun.Result {
            try MPIRun.command(
                [lockstep, "train", "--config", "ft.yaml", "--workers", "2", "--set", "training.max_steps=20",
                 "--set", "output.directory=\(output)", "--set", "training.dropout=\(dropout)",
                 "--set", "optimizer.kind=\(optimizer)"]
                    + (resume ? ["--resume", "auto"] : []),
                directory: directory, timeout: 300)
        }
        let full = try train("runs/full")
        #expect(full.status == 0, "\(full.output)")
        #expect(full.output.contains("dev accuracy"))
        let checkpointRoot = directory.appendingPathComponent("runs/resumed/checkpoints")
        try FileManager.default.createDirectory(at: checkpointRoot, withIntermediateDirectories: true)
        try FileManager.default.copyItem(
            at: directory.appendingPathComponent("runs/full/checkpoints/step-0000010"),
            to: checkpointRoot.appendingPathComponent("step-0000010"))
        let resumed = try train("runs/resumed", resume: true)
        #expect(resumed.status == 0, "\(resumed.output)")
        #expect(resumed.output.contains("resuming from") && resumed.output.contains("at step 10"), "\(resumed.output)")
        let steps = try MetricsLog.read(url: directory.appendingPathComponent("runs/resumed/metrics.jsonl"))
            .compactMap { $0["step"]?.doubleValue }
        #expect(steps.min() ?? 0 > 10, "the resumed run logged steps \(steps)")
        for file in ["checkpoints/step-0000020/model.safetensors", "model/model.safetensors", "model/config.json"] {
            let a = try Data(contentsOf: directory.appendingPathComponent("runs/full/\(file)"))
            let b = try Data(contentsOf: directory.appendingPathComponent("runs/resumed/\(file)"))
            #expect(a == b, "\(file) differs after resuming")
        }
        if optimizer == "muon" {
            // Muon takes the block matrices; the new head stays with AdamW.
            try MuonTrainingTests.expectMuonState(directory, "runs/full", step: 20, adamWTensor: "score.weight")
        }
    }

    /// Issue 16: a frozen backbone with two workers crashed every worker at step 0 ("GradientBuckets.finish()
    /// before bucketReady": the head-only backward never signals the blocks' buckets). Now it trains, leaves
    /// every trunk tensor as one worker does, and learns the same head as one worker on the same global batches.
    @Test func frozenBackboneTrainsWithTwoWorkers() throws {
        let temporary = try TemporaryDirectory()
        let directory = temporary.url
        try Self.setUp(directory)
        try (Self.configText + "\ncheckpoint: {every: 0}\n")
            .write(to: directory.appendingPathComponent("ft.yaml"), atomically: true, encoding: .utf8)
        func train(_ output: String, workers: Int) throws -> MPIRun.Result {
            try MPIRun.command(
                [DistributedTrainingTests.lockstep, "train", "--config", "ft.yaml", "--workers", "\(workers)",
                 "--set", "training.max_steps=6", "--set", "evaluation.every=3",
                 "--set", "classification.freeze_backbone=true", "--set", "output.directory=\(output)"],
                directory: directory, timeout: 300)
        }
        let two = try train("runs/two", workers: 2)
        try #require(two.status == 0, "\(two.output)")
        #expect(!two.output.contains("GradientBuckets"), "\(two.output)")
        let one = try train("runs/one", workers: 1)
        try #require(one.status == 0, "\(one.output)")
        let a = try SafeTensorsFile.read(directory.appendingPathComponent("runs/one/model/model.safetensors"))
        let b = try SafeTensorsFile.read(directory.appendingPathComponent("runs/two/model/model.safetensors"))
        for tensor in a.tensors where tensor.name != "score.weight" {
            #expect(try a.floats(named: tensor.name) == b.floats(named: tensor.name), "\(tensor.name) differs")
        }
        let headOne = try a.floats(named: "score.weight"), headTwo = try b.floats(named: "score.weight")
        #expect(headOne.count == headTwo.count && headTwo.contains { $0 != 0 })
        let difference = zip(headOne, headTwo).map { abs($0 - $1) }.max() ?? 0
        #expect(difference < 1e-4, "the head differs by \(difference) between 1 and 2 workers")
    }
}
