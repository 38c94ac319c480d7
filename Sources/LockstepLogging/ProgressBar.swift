import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The console progress line, as pure formatting:
/// ```
/// step   120/5000 [--------------------]   2.4%  loss 2.3451  lr 5.99e-04  |g| 0.812  1,234 tok/s  mem 1.2G  ETA 1h02m
/// ```
/// `mem` is the largest worker's peak resident set, when known.
/// Non-finite numbers print as `nan`/`inf` (so a bad loss is visible) and an unknown ETA as `--`.
public enum ProgressLine {
    /// Characters between the brackets.
    public static let barWidth = 20

    /// One progress line, without a newline.
    /// - Parameters:
    ///   - step: steps completed so far (0 before the first one finishes).
    ///   - elapsed: seconds since training started; with `step` it gives the ETA, assuming the remaining
    ///     steps go at the average pace so far.
    ///   - peakResidentBytes: the largest worker's peak resident set; nil leaves `mem` out.
    public static func format(
        step: Int, totalSteps: Int, loss: Double, learningRate: Double, gradNorm: Double,
        tokensPerSecond: Double, elapsed: Double, peakResidentBytes: Int? = nil
    ) -> String {
        let total = String(totalSteps)
        let current = String(step)
        let paddedStep = String(repeating: " ", count: max(0, total.count - current.count)) + current
        let fraction = totalSteps > 0 ? min(1, max(0, Double(step) / Double(totalSteps))) : 0
        let remaining: Double =
            step > 0 ? elapsed / Double(step) * Double(max(0, totalSteps - step)) : .nan
        return "step \(paddedStep)/\(total) [\(bar(fraction: fraction, width: barWidth))] "
            + String(format: "%5.1f%%", fraction * 100)
            + "  loss " + String(format: "%.4f", loss)
            + "  lr " + String(format: "%.2e", learningRate)
            + "  |g| " + String(format: "%.3f", gradNorm)
            + "  " + groupedThousands(tokensPerSecond) + " tok/s"
            + (peakResidentBytes.map { "  mem " + bytes($0) } ?? "")
            + "  ETA " + duration(remaining)
    }

    /// `width` characters: `#` for the done part (rounded down), `-` for the rest.
    public static func bar(fraction: Double, width: Int) -> String {
        let clamped = fraction.isFinite ? min(1, max(0, fraction)) : 0
        let done = Int((clamped * Double(width)).rounded(.down))
        return String(repeating: "#", count: done) + String(repeating: "-", count: width - done)
    }

    /// A byte count in binary units with one decimal: `512.0M`, `4.9G` (K, M, G, T: powers of 1024).
    public static func bytes(_ count: Int) -> String {
        var value = Double(count), unit = 0
        let units = ["B", "K", "M", "G", "T"]
        while value >= 1024 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return unit == 0 ? "\(count)B" : String(format: "%.1f", value) + units[unit]
    }

    /// Whole seconds as `42s`, `3m07s` or `1h02m` (hours keep counting past a day: `30h00m`); `--` for a
    /// negative or non-finite duration.
    public static func duration(_ seconds: Double) -> String {
        guard seconds.isFinite, seconds >= 0, seconds < 1e15 else { return "--" }
        let whole = Int(seconds.rounded())
        if whole < 60 { return "\(whole)s" }
        if whole < 3600 { return "\(whole / 60)m" + String(format: "%02ds", whole % 60) }
        return "\(whole / 3600)h" + String(format: "%02dm", (whole % 3600) / 60)
    }

    /// A rate rounded to an integer with comma thousands separators (`1,234,567`); `--` if non-finite.
    public static func groupedThousands(_ value: Double) -> String {
        guard value.isFinite, abs(value) < 1e18 else { return "--" }
        let whole = Int(value.rounded())
        var digits = String(whole.magnitude)
        var groups: [Substring] = []
        while digits.count > 3 {
            groups.insert(digits.suffix(3), at: 0)
            digits.removeLast(3)
        }
        groups.insert(Substring(digits), at: 0)
        return (whole < 0 ? "-" : "") + groups.joined(separator: ",")
    }
}

/// Shows `ProgressLine`s on a console stream.
///
/// On a terminal the line is redrawn in place (carriage return, then erase to end of line); otherwise (a log
/// file, a pipe, a Slurm job) a plain line is written on the first step, every `plainLineEvery` steps and on
/// the last step, so logs stay short. Writing is best-effort: a failed write to the console is ignored
/// rather than stopping training.
public final class ProgressReporter {
    public let output: FileHandle
    public let isTerminal: Bool
    public let plainLineEvery: Int
    /// True while a redrawn line is on screen without its newline.
    private var lineOpen = false

    /// - Parameters:
    ///   - output: where lines go; standard error by default, leaving standard output to the program.
    ///   - isTerminal: nil to ask the system (`isatty`) about `output`.
    ///   - plainLineEvery: interval in steps between plain lines when not on a terminal (at least 1).
    public init(output: FileHandle = .standardError, isTerminal: Bool? = nil, plainLineEvery: Int = 10) {
        self.output = output
        self.isTerminal = isTerminal ?? (isatty(output.fileDescriptor) == 1)
        self.plainLineEvery = max(1, plainLineEvery)
    }

    /// Shows progress after `step` completed steps (see `ProgressLine.format`).
    public func update(
        step: Int, totalSteps: Int, loss: Double, learningRate: Double, gradNorm: Double,
        tokensPerSecond: Double, elapsed: Double, peakResidentBytes: Int? = nil
    ) {
        let line = ProgressLine.format(
            step: step, totalSteps: totalSteps, loss: loss, learningRate: learningRate, gradNorm: gradNorm,
            tokensPerSecond: tokensPerSecond, elapsed: elapsed, peakResidentBytes: peakResidentBytes)
        if isTerminal {
            write("\r" + line + "\u{1B}[K")
            lineOpen = true
        } else if step == 1 || step % plainLineEvery == 0 || step == totalSteps {
            write(line + "\n")
        }
    }

    /// Writes `text` on a line of its own (an evaluation result, a warning), keeping the progress line below
    /// it on a terminal: the next `update` redraws it.
    public func message(_ text: String) {
        if isTerminal && lineOpen {
            write("\r\u{1B}[K" + text + "\n")
            lineOpen = false
        } else {
            write(text + "\n")
        }
    }

    /// Ends a redrawn line with its newline, so later output starts on a fresh line.
    public func finish() {
        if lineOpen {
            write("\n")
            lineOpen = false
        }
    }

    private func write(_ text: String) {
        try? output.write(contentsOf: Data(text.utf8))
    }
}
