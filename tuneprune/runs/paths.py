"""Dotted paths into a trial's spec that searches vary and reports read back by name."""

THETA_ALPHA = "sparsity.theta.alpha"
"""The log_density slope alpha (formulas §2), searched to fit the alpha(S_f) rule."""

TARGET_SPARSITY = "sparsity.target"
"""The final sparsity S_f, the grid axis of an alpha search."""

SCHEDULER_CONSTANTS = "sparsity.scheduler."
"""The prefix of the adaptive scheduler's A, B, C, D (formulas §3), searched to find presets."""
