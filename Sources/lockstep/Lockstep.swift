import ArgumentParser

/// `lockstep`: the command-line entry point. Each subcommand lives in its own file.
@main
struct Lockstep: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Data-parallel GPT training over MPI on CPUs.",
        subcommands: [
            PrepareCommand.self, TrainCommand.self, EvaluateCommand.self, PredictCommand.self, GenerateCommand.self,
            InspectCommand.self, ExportCommand.self, ImportCommand.self,
            EncodeCommand.self, DecodeCommand.self, TrainTokenizerCommand.self, TokenizerBenchmarkCommand.self,
        ])
}
