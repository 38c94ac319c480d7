// Tests for LockstepFormats.
