import Foundation
import Testing
@testable import LockstepConfig

@Suite("Run configuration")
struct RunConfigTests {
    let minimal = """
        model:
          context_length: 32
          layers: 2
          heads: 4
          channels: 48
        data:
          train: data/train_*.bin
        training:
          micro_batch_size: 4
          global_batch_tokens: 256
        """

    @Test func defaultsAndValues() throws {
        let config = try RunConfig(yaml: minimal, file: "run.yaml")
        #expect(config.model.layers == 2)
        #expect(config.training.sequenceLength == 32)
        #expect(config.schedule.kind == .cosine)
        #expect(config.schedule.minimum == config.schedule.peak / 10)
        #expect(try config.accumulationSteps(workers: 1) == 2)
        #expect(try config.accumulationSteps(workers: 2) == 1)
        #expect(config.globalBatchWindows == 8)
    }

    /// `fault_tolerance.hang_timeout_seconds`: 300 by default, set by file or `--set`, > 0, no unknown keys;
    /// a config stored before the section existed (in an old checkpoint's state.json) decodes with the default.
    @Test func hangTimeoutDefaultsValidatesAndDecodesFromOldCheckpoints() throws {
        #expect(try RunConfig(yaml: minimal, file: "run.yaml").faultTolerance.hangTimeoutSeconds == 300)
        let set = try RunConfig(yaml: minimal + "\nfault_tolerance: {hang_timeout_seconds: 2.5}\n", file: "run.yaml")
        #expect(set.faultTolerance.hangTimeoutSeconds == 2.5)
        let overridden = try RunConfig(yaml: minimal, file: "run.yaml", overrides: ["fault_tolerance.hang_timeout_seconds=7"])
        #expect(overridden.faultTolerance.hangTimeoutSeconds == 7)
        for bad in ["0", "-1", "soon"] {
            let error = #expect(throws: ConfigError.self) {
                try RunConfig(yaml: minimal, file: "run.yaml", overrides: ["fault_tolerance.hang_timeout_seconds=\(bad)"])
            }
            #expect(error?.key == "fault_tolerance.hang_timeout_seconds", "\(bad): \(String(describing: error))")
        }
        let unknown = #expect(throws: ConfigError.self) {
            try RunConfig(yaml: minimal + "\nfault_tolerance: {hang_timeout: 5}\n", file: "run.yaml")
        }
        #expect(unknown?.key == "fault_tolerance.hang_timeout")
        var json = try JSONSerialization.jsonObject(with: JSONEncoder().encode(set)) as! [String: Any]
        json.removeValue(forKey: "faultTolerance")
        let old = try JSONDecoder().decode(RunConfig.self, from: JSONSerialization.data(withJSONObject: json))
        #expect(old.faultTolerance.hangTimeoutSeconds == 300)
        #expect(old.model == set.model)
    }

    /// `fault_tolerance.max_restarts` (0) and `min_workers` (1): defaults, settable, bounded; a stored
    /// section without them (a checkpoint from before) decodes with the defaults.
    @Test func restartSettingsDefaultValidateAndDecodeFromOldCheckpoints() throws {
        let plain = try RunConfig(yaml: minimal, file: "run.yaml").faultTolerance
        #expect(plain.maxRestarts == 0 && plain.minWorkers == 1)
        let set = try RunConfig(
            yaml: minimal + "\nfault_tolerance: {max_restarts: 3, min_workers: 2}\n", file: "run.yaml")
        #expect(set.faultTolerance.maxRestarts == 3 && set.faultTolerance.minWorkers == 2)
        for (key, bad) in [("max_restarts", "-1"), ("min_workers", "0"), ("max_restarts", "many")] {
            let error = #expect(throws: ConfigError.self) {
                try RunConfig(yaml: minimal, file: "run.yaml", overrides: ["fault_tolerance.\(key)=\(bad)"])
            }
            #expect(error?.key == "fault_tolerance.\(key)", "\(key)=\(bad): \(String(describing: error))")
        }
        var json = try JSONSerialization.jsonObject(with: JSONEncoder().encode(set)) as! [String: Any]
        json["faultTolerance"] = ["hangTimeoutSeconds": 12.0]
        let old = try JSONDecoder().decode(RunConfig.self, from: JSONSerialization.data(withJSONObject: json))
        #expect(old.faultTolerance == RunConfig.FaultToleranceSettings(hangTimeoutSeconds: 12))
    }

    @Test func unknownKeyNamesFileLineAndKey() throws {
        let text = minimal + "\noptimizer:\n  beta1: 0.9\n  betta2: 0.95\n"
        let error = #expect(throws: ConfigError.self) { try RunConfig(yaml: text, file: "run.yaml") }
        #expect(error?.key == "optimizer.betta2")
        #expect(error?.line == 13)
        #expect(error?.description.hasPrefix("run.yaml:13: optimizer.betta2: unknown key") == true)
    }

    @Test func wrongTypeNamesTheKey() throws {
        let text = minimal.replacingOccurrences(of: "layers: 2", with: "layers: two")
        let error = #expect(throws: ConfigError.self) { try RunConfig(yaml: text, file: "run.yaml") }
        #expect(error?.key == "model.layers")
        #expect(error?.line == 3)
        #expect(error?.message.contains("expected an integer, found 'two'") == true)
    }

    @Test func overridesApplyOnTop() throws {
        let config = try RunConfig(
            yaml: minimal, file: "run.yaml",
            overrides: ["training.max_steps=7", "schedule.kind=linear", "distributed.workers=2"])
        #expect(config.training.maxSteps == 7)
        #expect(config.schedule.kind == .linear)
        #expect(config.distributed.workers == 2)
        #expect(throws: ConfigError.self) { try RunConfig(yaml: minimal, overrides: ["model.nope=1"]) }
        #expect(throws: ConfigError.self) { try RunConfig(yaml: minimal, overrides: ["novalue"]) }
    }

    @Test func inconsistentValuesAreRefused() throws {
        #expect(throws: ConfigError.self) {
            try RunConfig(yaml: minimal, overrides: ["training.global_batch_tokens=100"])
        }
        #expect(throws: ConfigError.self) { try RunConfig(yaml: minimal, overrides: ["model.channels=50"]) }
        #expect(throws: ConfigError.self) { try RunConfig(yaml: minimal, overrides: ["training.sequence_length=64"]) }
        let missingTrain = minimal.replacingOccurrences(of: "  train: data/train_*.bin", with: "  shuffle: false")
        let error = #expect(throws: ConfigError.self) { try RunConfig(yaml: missingTrain) }
        #expect(error?.key == "data.train")
    }

    /// `distributed.shard_optimizer`: false by default, set by file or `--set`, only true or false; a stored
    /// config from before the key existed (an old checkpoint's state.json) decodes as replicated.
    @Test func shardOptimizerDefaultsValidatesAndDecodesFromOldCheckpoints() throws {
        #expect(try RunConfig(yaml: minimal, file: "run.yaml").distributed.shardOptimizer == false)
        let set = try RunConfig(yaml: minimal + "\ndistributed: {shard_optimizer: true}\n", file: "run.yaml")
        #expect(set.distributed.shardOptimizer)
        let overridden = try RunConfig(yaml: minimal, file: "run.yaml", overrides: ["distributed.shard_optimizer=true"])
        #expect(overridden.distributed.shardOptimizer)
        for bad in ["2", "sharded", "[true]"] {
            let error = #expect(throws: ConfigError.self) {
                try RunConfig(yaml: minimal, file: "run.yaml", overrides: ["distributed.shard_optimizer=\(bad)"])
            }
            #expect(error?.key == "distributed.shard_optimizer", "\(bad): \(String(describing: error))")
        }
        let misspelt = #expect(throws: ConfigError.self) {
            try RunConfig(yaml: minimal + "\ndistributed: {shard_optimizers: true}\n", file: "run.yaml")
        }
        #expect(misspelt?.key == "distributed.shard_optimizers")
        var json = try JSONSerialization.jsonObject(with: JSONEncoder().encode(set)) as! [String: Any]
        var distributed = json["distributed"] as! [String: Any]
        distributed.removeValue(forKey: "shardOptimizer")
        json["distributed"] = distributed
        let old = try JSONDecoder().decode(RunConfig.self, from: JSONSerialization.data(withJSONObject: json))
        #expect(old.distributed.shardOptimizer == false && old.distributed.workers == set.distributed.workers)
        let stored = try JSONDecoder().decode(RunConfig.self, from: JSONEncoder().encode(set))
        #expect(stored == set)
    }

    /// `distributed.progress_thread` (false by default) and `distributed.shared_memory` (true): set by `--set`,
    /// only true or false; a stored config from before the key existed decodes as its default.
    @Test func progressThreadAndSharedMemoryDefaultsValidateAndDecodeFromOldCheckpoints() throws {
        let keys: [(key: String, field: String, defaultValue: Bool, value: (RunConfig) -> Bool)] = [
            ("progress_thread", "progressThread", false, { $0.distributed.progressThread }),
            ("shared_memory", "sharedMemory", true, { $0.distributed.sharedMemory }),
        ]
        for (key, field, defaultValue, value) in keys {
            #expect(value(try RunConfig(yaml: minimal, file: "run.yaml")) == defaultValue, "\(key)")
            let set = try RunConfig(yaml: minimal, file: "run.yaml", overrides: ["distributed.\(key)=\(!defaultValue)"])
            #expect(value(set) == !defaultValue, "\(key)")
            let error = #expect(throws: ConfigError.self) {
                try RunConfig(yaml: minimal, file: "run.yaml", overrides: ["distributed.\(key)=often"])
            }
            #expect(error?.key == "distributed.\(key)", "\(String(describing: error))")
            var json = try JSONSerialization.jsonObject(with: JSONEncoder().encode(set)) as! [String: Any]
            var distributed = json["distributed"] as! [String: Any]
            distributed.removeValue(forKey: field)
            json["distributed"] = distributed
            let old = try JSONDecoder().decode(RunConfig.self, from: JSONSerialization.data(withJSONObject: json))
            #expect(value(old) == defaultValue, "\(key)")
        }
    }

    /// `training.dropout`: 0 by default, a probability in [0, 1) by file or `--set`, errors naming the key, 0 for a
    /// stored config from before the key existed.
    @Test func dropoutDefaultsValidatesAndDecodesFromOldCheckpoints() throws {
        #expect(try RunConfig(yaml: minimal, file: "run.yaml").training.dropout == 0)
        let set = try RunConfig(yaml: minimal, file: "run.yaml", overrides: ["training.dropout=0.1"])
        #expect(set.training.dropout == 0.1)
        for bad in ["1", "-0.1", "often"] {
            let error = #expect(throws: ConfigError.self) {
                try RunConfig(yaml: minimal, file: "run.yaml", overrides: ["training.dropout=\(bad)"])
            }
            #expect(error?.key == "training.dropout", "\(bad): \(String(describing: error))")
        }
        var json = try JSONSerialization.jsonObject(with: JSONEncoder().encode(set)) as! [String: Any]
        var training = json["training"] as! [String: Any]
        training.removeValue(forKey: "dropout")
        json["training"] = training
        let old = try JSONDecoder().decode(RunConfig.self, from: JSONSerialization.data(withJSONObject: json))
        #expect(old.training.dropout == 0)
    }

    /// `optimizer.kind`: adamw by default; muon with its rate and momentum (defaults 0.02, 0.95), set by file or
    /// `--set`; errors name the key; Muon keys under AdamW, and Muon with a sharded optimizer, are refused; a
    /// stored config from before the keys existed decodes as AdamW.
    @Test func optimizerKindDefaultsValidatesAndDecodesFromOldCheckpoints() throws {
        let plain = try RunConfig(yaml: minimal, file: "run.yaml")
        #expect(plain.optimizer.kind == .adamw)
        let muon = try RunConfig(yaml: minimal + "\noptimizer: {kind: muon}\n", file: "run.yaml")
        #expect(muon.optimizer.kind == .muon && muon.optimizer.muonLearningRate == 0.02 && muon.optimizer.muonMomentum == 0.95)
        let set = try RunConfig(
            yaml: minimal, file: "run.yaml",
            overrides: ["optimizer.kind=muon", "optimizer.muon_learning_rate=0.05", "optimizer.muon_momentum=0.9"])
        #expect(set.optimizer.kind == .muon && set.optimizer.muonLearningRate == 0.05 && set.optimizer.muonMomentum == 0.9)
        let bad: [(override: [String], key: String)] = [
            (["optimizer.kind=sgd"], "optimizer.kind"),
            (["optimizer.kind=muon", "optimizer.muon_momentum=1"], "optimizer.muon_momentum"),
            (["optimizer.kind=muon", "optimizer.muon_momentum=-0.1"], "optimizer.muon_momentum"),
            (["optimizer.kind=muon", "optimizer.muon_learning_rate=-1"], "optimizer.muon_learning_rate"),
            (["optimizer.kind=muon", "optimizer.muon_learning_rate=fast"], "optimizer.muon_learning_rate"),
            (["optimizer.muon_learning_rate=0.05"], "optimizer.muon_learning_rate"),
            (["optimizer.muon_momentum=0.9"], "optimizer.muon_momentum"),
            (["optimizer.kind=muon", "distributed.shard_optimizer=true"], "distributed.shard_optimizer"),
        ]
        for (override, key) in bad {
            let error = #expect(throws: ConfigError.self) { try RunConfig(yaml: minimal, file: "run.yaml", overrides: override) }
            #expect(error?.key == key, "\(override): \(String(describing: error))")
        }
        let sharded = #expect(throws: ConfigError.self) {
            try RunConfig(yaml: minimal, overrides: ["optimizer.kind=muon", "distributed.shard_optimizer=true"])
        }
        #expect(sharded?.description.contains("muon") == true)
        #expect(RunConfig.FaultToleranceSettings.resumeCheckedKeys.contains("optimizer.kind"))

        var json = try JSONSerialization.jsonObject(with: JSONEncoder().encode(plain)) as! [String: Any]
        var optimizer = json["optimizer"] as! [String: Any]
        for key in ["kind", "muonLearningRate", "muonMomentum"] { optimizer.removeValue(forKey: key) }
        json["optimizer"] = optimizer
        let old = try JSONDecoder().decode(RunConfig.self, from: JSONSerialization.data(withJSONObject: json))
        #expect(old == plain)
        #expect(try JSONDecoder().decode(RunConfig.self, from: JSONEncoder().encode(set)) == set)
    }
}
