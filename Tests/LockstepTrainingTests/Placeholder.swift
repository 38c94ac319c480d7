// Tests for LockstepTraining.
