"""The engine's rules, one module per rule of the spec (the engine composes them)."""
