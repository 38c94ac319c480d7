import LockstepLogging
import Logging

/// This module's diagnostics (timeouts, hang reports, a lost parent): `lockstep.distributed` on standard error.
let log = Loggers.logger("distributed")
