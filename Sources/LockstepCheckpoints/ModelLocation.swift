import Foundation
import LockstepModel

/// A model directory that cannot be used for classification, naming the path and what was wrong.
public struct ClassifierLoadError: Error, CustomStringConvertible, Equatable {
    public var path: String
    public var reason: String

    public init(path: String, _ reason: String) {
        self.path = path
        self.reason = reason
    }

    public var description: String { "\(path): \(reason)" }
}

/// Where a trained model lives on disk, as `lockstep evaluate` and `predict` accept it.
public enum ModelLocation: Equatable, Sendable {
    /// A Lockstep checkpoint: `state.json`, `model.safetensors`, `checksums.json`.
    case checkpoint(URL)
    /// A Hugging Face GPT-2 directory: `config.json`, `model.safetensors` (and `vocab.json` + `merges.txt`).
    case huggingFace(URL)

    public var url: URL {
        switch self {
        case .checkpoint(let url), .huggingFace(let url): return url
        }
    }

    /// What `path` is: a checkpoint (it holds `state.json`), a Hugging Face directory (`config.json`), or a run's
    /// `checkpoints/` folder (`step-*` directories), which stands for its newest checkpoint whose checksums hold.
    /// - Throws: `ClassifierLoadError` naming `path` when it is none of these, or when no checkpoint in the
    ///   folder is valid (with the reason each was passed over).
    public static func resolve(_ path: URL) throws -> ModelLocation {
        let fileManager = FileManager.default
        var isDirectory: ObjCBool = false
        guard fileManager.fileExists(atPath: path.path, isDirectory: &isDirectory) else {
            throw ClassifierLoadError(path: path.path, "no such directory")
        }
        guard isDirectory.boolValue else {
            throw ClassifierLoadError(path: path.path, "is a file: give the model's directory")
        }
        if fileManager.fileExists(atPath: path.appendingPathComponent("state.json").path) { return .checkpoint(path) }
        if fileManager.fileExists(atPath: path.appendingPathComponent(HuggingFaceModel.configFile).path) {
            return .huggingFace(path)
        }
        let folder = CheckpointDirectory(root: path)
        if !folder.checkpoints().isEmpty {
            var rejections: [String] = []
            guard let newest = folder.newestValid(rejected: { rejections.append($0) }) else {
                throw ClassifierLoadError(
                    path: path.path, "no valid checkpoint in this folder (\(rejections.joined(separator: "; ")))")
            }
            return .checkpoint(newest)
        }
        throw ClassifierLoadError(
            path: path.path,
            "not a model: expected a checkpoint (state.json), a folder of checkpoints (step-*), or a Hugging Face "
                + "directory (config.json)")
    }

    /// Whether the model here has a classification head (a label count), read from `state.json` or
    /// `config.json` only, without loading weights; for commands that serve both kinds of model.
    public func hasClassifierHead() throws -> Bool {
        switch self {
        case .checkpoint(let url): return try TrainingCheckpoint.readState(url).model.labelCount != nil
        case .huggingFace(let url): return try HuggingFaceModel.loadConfig(directory: url).labelCount != nil
        }
    }
}

extension ModelLocation {
    /// `url` as a Lockstep checkpoint: itself when it holds `state.json`, the newest valid checkpoint when it is
    /// a run's `checkpoints/` folder; nil for anything else (such as a Hugging Face directory).
    public static func checkpoint(_ url: URL) -> URL? {
        guard case .checkpoint(let checkpoint) = try? resolve(url) else { return nil }
        return checkpoint
    }
}
