import LockstepLogging
import Logging

/// This module's diagnostics: `lockstep.training` on standard error.
let log = Loggers.logger("training")
