// Tests for LockstepModel.
