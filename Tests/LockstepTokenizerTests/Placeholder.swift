// Tests for LockstepTokenizer.
