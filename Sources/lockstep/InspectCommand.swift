import ArgumentParser
import Foundation
import LockstepFormats
import LockstepTraining
import LockstepCheckpoints

/// `lockstep inspect CHECKPOINT`: what a checkpoint holds and whether its checksums hold.
struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect", abstract: "Show a checkpoint's step, config, metrics, tensors and checksum status.")

    @Argument(help: "A checkpoint directory (runs/NAME/checkpoints/step-NNNNNNN), or a run's checkpoints/ for the newest.")
    var checkpoint: String

    func run() throws {
        var url = URL(fileURLWithPath: checkpoint)
        if !FileManager.default.fileExists(atPath: url.appendingPathComponent("state.json").path) {
            guard let newest = CheckpointDirectory(root: url).checkpoints().first?.url else {
                throw ValidationError("\(checkpoint): neither a checkpoint nor a folder of checkpoints")
            }
            url = newest
        }
        let checksumStatus: String
        do {
            try CheckpointDirectory.verify(url)
            checksumStatus = "ok"
        } catch {
            checksumStatus = "FAILED: \(error)"
        }
        print("checkpoint: \(url.path)")
        print("checksums: \(checksumStatus)")
        let state = try TrainingCheckpoint.readState(url)
        print("step: \(state.step) (optimizer step \(state.optimizerStep)), format version \(state.formatVersion)")
        print("data cursor: epoch \(state.cursor.epoch), position \(state.cursor.position); world size \(state.worldSize)")
        let loss = state.lastLoss.map { String(format: "%.4f", $0) } ?? "-"
        let validation = state.lastValidationLoss.map { String(format: "%.4f", $0) } ?? "-"
        print(String(format: "metrics: loss %@, validation loss %@, skipped steps %d, trained %.1f s", loss, validation,
            state.skippedSteps, state.elapsedSeconds))
        print("model: \(state.model.layerCount) layers, \(state.model.headCount) heads, \(state.model.channels) channels, "
            + "context \(state.model.contextLength), vocabulary \(state.model.vocabularySize)")
        if let labels = state.labelNames { print("labels: \(labels.joined(separator: ", "))") }
        for file in ["model.safetensors", "optimizer.safetensors"] {
            let tensors = try SafeTensorsFile.read(url.appendingPathComponent(file))
            print("\(file):")
            for name in tensors.names.sorted() {
                let tensor = try tensors.tensor(named: name)
                print("  \(name) \(tensor.dtype) \(tensor.shape)")
            }
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        print("config:")
        print(String(decoding: try encoder.encode(state.config), as: UTF8.self))
    }
}
