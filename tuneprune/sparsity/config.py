"""Configuration of sparse training (``sparsity:`` in a run config), formulas §1-§4.

Defaults reproduce Feather: p = 3, global threshold, theta by the ``feather`` rule,
cubic schedule reaching the target at half of training, no weight elimination.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from tuneprune.shared.config import StrictModel, finite_or_inf
from tuneprune.sparsity.adaptive import DEFAULT_INITIAL_SPARSITY, ModelFamily, preset_constants
from tuneprune.sparsity.theta import resolve_alpha

Exponent = Annotated[float, BeforeValidator(finite_or_inf), Field(ge=1.0)]


class ThetaConfig(StrictModel):
    """Gradient scale of pruned weights (formulas §2)."""

    policy: Literal["constant", "feather", "log_density"] = "feather"
    value: float = Field(1.0, ge=0.0, le=1.0, description="theta of the constant policy")
    alpha: float | str = Field(
        "auto", description="log_density slope: a number >= 0, 'auto' (formulas §2 rule) or 'fitted:PATH'"
    )
    mode: Literal["global", "layer"] = "global"
    theta_min: float = Field(0.0, ge=0.0, le=1.0)

    @field_validator("alpha")
    @classmethod
    def _alpha(cls, v: float | str) -> float | str:
        """A number (also one PyYAML reads as a string, such as ``1e-2``), ``'auto'`` or ``'fitted:PATH'``."""
        if isinstance(v, str):
            if v == "auto" or (v.startswith("fitted:") and len(v) > len("fitted:")):
                return v
            try:
                v = float(v)
            except ValueError:
                raise ValueError("must be a number >= 0, 'auto' or 'fitted:PATH'") from None
        if not math.isfinite(v) or v < 0:
            raise ValueError("must be a finite number >= 0, 'auto' or 'fitted:PATH'")
        return v


class SchedulerConfig(StrictModel):
    """Sparsity schedule S_k: cubic GMP (formulas §1.5), adaptive (formulas §3) or constant."""

    type: Literal["cubic", "adaptive", "constant"] = "cubic"
    start_epoch: float = Field(0.0, ge=0.0, description="cubic: epoch at which pruning starts (k0)")
    end_fraction: float = Field(
        0.5, gt=0.0, le=1.0, description="cubic: fraction of training at which S_f is reached (k1)"
    )
    preset: str | None = Field(
        None, description="adaptive: 'lambda1', 'lambda2' or a YAML file of A, B, C, D, read into A, B, C, D at load"
    )
    family: ModelFamily = Field(
        ModelFamily.RESNET,
        description="adaptive: model family whose preset D applies; a run config sets it from its model",
    )
    A: float | None = Field(None, allow_inf_nan=False)
    B: float | None = Field(None, allow_inf_nan=False)
    C: float | None = Field(None, allow_inf_nan=False)
    D: float | None = Field(None, allow_inf_nan=False)
    initial_sparsity: float = Field(
        DEFAULT_INITIAL_SPARSITY,
        gt=0.0,
        lt=1.0,
        description="adaptive: sparsity it starts from, above 0, which it cannot leave (formulas §9)",
    )
    warmup_epochs: float = Field(0.0, ge=0.0, description="adaptive: epochs of cubic schedule before it takes over")

    @model_validator(mode="after")
    def _adaptive_constants(self) -> SchedulerConfig:
        """The preset's A, B, C, D (D by ``family``) fill the constants not given explicitly (formulas §3)."""
        missing = [k for k in "ABCD" if getattr(self, k) is None]
        if self.type != "adaptive" or not missing:
            return self
        if self.preset is None:
            raise ValueError(f"adaptive scheduler needs 'preset' or all of A, B, C, D (missing {', '.join(missing)})")
        constants = preset_constants(self.preset, self.family)
        self._resolve(**{key: constants[key] for key in missing})
        return self


class DropConfig(StrictModel):
    """Elimination of a fraction rho of the pruned weights from optimisation (formulas §4)."""

    rho: float = Field(0.0, ge=0.0, le=1.0)
    mode: Literal["global", "layer"] = "global"
    timeframe: Literal["from_start", "after_target"] = "from_start"


class SparsityConfig(StrictModel):
    """Feather sparse training (formulas §1)."""

    target: float = Field(0.9, ge=0.0, lt=1.0, description="final sparsity S_f in [0, 1)")
    operator_p: Exponent = Field(3.0, description="exponent p of the thresholding operator, >= 1 or inf")
    threshold: Literal["global", "layer"] = "global"
    min_size: int = Field(0, ge=0, description="layers with fewer weights are not pruned")
    theta: ThetaConfig = ThetaConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    drop: DropConfig = DropConfig()

    @model_validator(mode="after")
    def _resolved_alpha(self) -> SparsityConfig:
        """log_density's ``'auto'`` or ``'fitted:PATH'`` alpha becomes the number it gives at the target (formulas §2)."""
        alpha = self.theta.alpha
        if self.theta.policy != "log_density" or not isinstance(alpha, str):
            return self
        try:
            value = resolve_alpha(alpha, self.target)
        except ValueError as err:
            raise ValueError(f"theta.alpha = {alpha!r}: {err}") from None
        self.theta._resolve(alpha=value)
        return self

    @model_validator(mode="after")
    def _elimination_under_layer_thresholds(self) -> SparsityConfig:
        """formulas §4 defines the global t only under the global T: against per-layer T_l it can freeze kept weights."""
        if self.threshold == "layer" and self.drop.rho > 0 and self.drop.mode == "global":
            raise ValueError(
                "sparsity.threshold = 'layer' with sparsity.drop.mode = 'global' is undefined (formulas §4): "
                "use drop.mode 'layer' or threshold 'global'"
            )
        return self
