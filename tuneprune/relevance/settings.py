"""Settings of relevance-based channel pruning (formulas §6) that a run config may embed.

:class:`RelevanceSettings` says how channels are scored (LRP rule, statistics, the
evaluation samples) and pruned (scope). :class:`PruningPoint` adds one ranking, delta and
percentage: the optional ``relevance:`` section of a trial's spec
(:class:`~tuneprune.runs.TrialSpec`), evaluated after training.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tuneprune.shared.config import StrictModel

Rule = Literal["epsilon", "gamma", "alpha2beta1"]
Statistic = Literal["mean", "mean_abs", "max", "max_abs", "min", "min_abs"]
Ranking = Literal["relevance", "parameter", "random", "combined"]
Scope = Literal["global", "layer"]
Normalization = Literal["none", "layer_share", "layer_max"]


class RelevanceSettings(StrictModel):
    """How channels are scored and pruned (formulas §6; the seed's choices are the defaults)."""

    rule: Rule = Field("alpha2beta1", description="LRP rule of the convolutions; linear layers use epsilon")
    epsilon: float = Field(1e-6, gt=0.0, description="stabiliser of the epsilon rule")
    gamma: float = Field(0.25, ge=0.0, description="weight of the positive part in the gamma rule")
    statistic: Statistic = Field("mean_abs", description="channel score from its mean relevance map")
    parameter_statistic: Statistic = Field("mean_abs", description="channel score from its filter weights")
    split: Literal["train", "val", "test"] = Field("val", description="samples whose relevance is averaged")
    eval_samples: int = Field(512, ge=1, description="at most this many samples of `split`")
    batch_size: int = Field(128, ge=1, description="batch size of the relevance pass")
    scope: Scope = Field("global", description="rank channels across all layers, or prune each layer alike")
    normalize: Normalization = Field(
        "layer_max",
        description="relevance scores compared across layers as: raw (none), share of the layer mean, share of the layer max",
    )
    parameter_normalize: Normalization = Field("none", description="the same choice for the parameter scores")
    min_layer_share: float = Field(
        0.1, ge=0.0, lt=1.0, description="global scope: every layer keeps at least this share of its channels (and one)"
    )
    seed: int = Field(0, ge=0, description="seed of the random ranking")
    device: Literal["auto", "cpu", "cuda"] = "auto"


class PruningPoint(RelevanceSettings):
    """One pruned model: a ranking (or a delta mix) at one percentage, evaluated without retraining."""

    ranking: Ranking | Literal["mixed"] = Field("mixed", description="'mixed' is the delta walk of formulas §6")
    delta: float = Field(0.5, ge=0.0, le=1.0, description="relevance share of the mixed ranking")
    percentage: float = Field(50.0, ge=0.0, lt=100.0, description="percent of convolution channels pruned")
