import Foundation
import LockstepCheckpoints

/// Several fine-tuned classifiers answering as one (`lockstep evaluate|predict --model A --model B ...`): a
/// text's class probabilities are the mean of the members' ("soft voting").
///
/// Why: classifiers fine-tuned from one pretrained model with different seeds err on different texts, so the
/// mean of their probabilities errs less often than any one of them (SST-2 in docs/BENCHMARKS.md). Each member
/// reads the texts its own way (tokenizer, sequence length, `echo`); only the label names must agree.
public struct ClassifierEnsemble {
    /// At least one classifier; all have the same label names in the same order.
    public let members: [TrainedClassifier]

    /// K names in id order, shared by every member.
    public var labelNames: [String] { members[0].labelNames }

    /// - Throws: `ClassifierLoadError` for no members, or a member whose label names differ from the first's
    ///   (naming both models and their labels).
    public init(members: [TrainedClassifier]) throws {
        guard let first = members.first else {
            throw ClassifierLoadError(path: "<ensemble>", "an ensemble needs at least one classifier")
        }
        for member in members.dropFirst() where member.labelNames != first.labelNames {
            throw ClassifierLoadError(
                path: member.location.url.path,
                "has labels \(member.labelNames), but \(first.location.url.path) has \(first.labelNames): the "
                    + "members of an ensemble must be fine-tuned on the same labels")
        }
        self.members = members
    }

    /// Each member's class logits of every text (`TrainedClassifier.logits`), in member order: M arrays of N·K.
    /// - Parameter sequenceLength: T for every member; nil: each member's own `defaultSequenceLength`.
    public func memberLogits(texts: [String], sequenceLength: Int?, batchSize: Int) throws -> [[Double]] {
        try members.map {
            try $0.logits(texts: texts, sequenceLength: sequenceLength, batchSize: batchSize).map(Double.init)
        }
    }

    /// The ensemble's class probabilities, N·K row-major: the mean over members of their calibrated
    /// probabilities, softmax(logits / the member's temperature), which puts members of different confidence on
    /// one scale. One member gives exactly its own `TrainedClassifier.probabilities(logits:calibrated: true)`.
    /// - Parameter logits: `memberLogits(texts:sequenceLength:batchSize:)`'s result.
    public func probabilities(memberLogits logits: [[Double]]) throws -> [Double] {
        var sum: [Double]?
        for (member, memberLogits) in zip(members, logits) {
            let p = try TemperatureScaling.apply(
                logits: memberLogits, classCount: member.labelCount, temperature: member.temperature)
            sum = sum.map { zip($0, p).map { $0 + $1 } } ?? p
        }
        let count = Double(members.count)
        return (sum ?? []).map { $0 / count }
    }

    /// Scores for metrics that take logits, with `scoreTemperature`: softmax(scores) is the raw model's
    /// probabilities and softmax(scores / scoreTemperature) the calibrated ones. One member: its own logits and
    /// temperature, so its metrics are exactly those of the model alone. Several: the log of
    /// `probabilities(memberLogits:)` and temperature 1, since the ensemble has no raw form of its own.
    public func scores(memberLogits logits: [[Double]]) throws -> [Double] {
        if members.count == 1 { return logits[0] }
        return try probabilities(memberLogits: logits).map { log(max($0, .leastNormalMagnitude)) }
    }

    /// The temperature that calibrates `scores(memberLogits:)`: the one member's, else 1.
    public var scoreTemperature: Double { members.count == 1 ? members[0].temperature : 1 }
}
