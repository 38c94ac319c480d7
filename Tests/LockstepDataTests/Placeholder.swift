// Tests for LockstepData.
