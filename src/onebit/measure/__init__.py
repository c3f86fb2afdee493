"""Measurements: memory, training-step cost, gradient fidelity, and the device bench."""
