"""Sparse training engine: Feather's thresholding with gradient scaling, schedules and elimination (formulas §1-§4).

Imports neither Ray, MLflow nor the training loop: the loop finds :class:`Sparsifier` here.
"""

from tuneprune.sparsity.adaptive import PRESETS, AdaptiveScheduler, ModelFamily, preset_constants
from tuneprune.sparsity.config import DropConfig, SchedulerConfig, SparsityConfig, ThetaConfig
from tuneprune.sparsity.drop import Elimination
from tuneprune.sparsity.layers import original_weight, prunable_layers, prunable_sparsity
from tuneprune.sparsity.masks import jaccard
from tuneprune.sparsity.schedules import (
    AdaptiveSchedule,
    ConstantSchedule,
    CubicSchedule,
    Schedule,
    build_schedule,
    cubic_sparsity,
)
from tuneprune.sparsity.sparsifier import Sparsifier
from tuneprune.sparsity.ste import threshold_operator
from tuneprune.sparsity.theta import (
    ConstantTheta,
    FeatherTheta,
    LogDensityTheta,
    ThetaPolicy,
    alpha_for_target,
    alpha_from_rule_file,
    build_theta_policy,
    feather_theta,
    log_density_theta,
    resolve_alpha,
)
from tuneprune.sparsity.thresholds import global_threshold, layer_thresholds, magnitude_quantiles

__all__ = [
    "PRESETS",
    "AdaptiveSchedule",
    "AdaptiveScheduler",
    "ConstantSchedule",
    "ConstantTheta",
    "CubicSchedule",
    "DropConfig",
    "Elimination",
    "FeatherTheta",
    "LogDensityTheta",
    "ModelFamily",
    "Schedule",
    "SchedulerConfig",
    "Sparsifier",
    "SparsityConfig",
    "ThetaConfig",
    "ThetaPolicy",
    "alpha_for_target",
    "alpha_from_rule_file",
    "build_schedule",
    "build_theta_policy",
    "cubic_sparsity",
    "feather_theta",
    "global_threshold",
    "jaccard",
    "layer_thresholds",
    "log_density_theta",
    "magnitude_quantiles",
    "original_weight",
    "preset_constants",
    "prunable_layers",
    "prunable_sparsity",
    "resolve_alpha",
    "threshold_operator",
]
