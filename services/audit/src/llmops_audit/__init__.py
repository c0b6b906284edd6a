"""The audit service: every platform event, appended once to a hash chain, with signed checkpoints."""
