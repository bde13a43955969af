"""The ``prune-stochastic`` config: the dense model's training run and the formulas §5 settings."""

from __future__ import annotations

from pydantic import Field

from tuneprune.shared.config import StrictModel
from tuneprune.training.config import RunConfig


class TargetConfig(StrictModel):
    """The layers Stochastic Pruning perturbs and prunes (formulas §5).

    formulas §1.1's prunable layers (every Conv2d/Linear with at least ``min_size`` weights)
    less the first convolution and the classifier (excluded by default, like the
    reference) and any module named in ``exclude``. Excluded layers keep their trained
    weights exactly: no noise, no pruning.
    """

    exclude_first_conv: bool = True
    exclude_classifier: bool = True
    exclude: list[str] = Field(default_factory=list, description="further module names to leave untouched")
    min_size: int = Field(0, ge=0, description="layers with fewer weights are neither perturbed nor pruned")


class FinetuneConfig(StrictModel):
    """Fine-tuning of a pruned model with its mask held fixed and BatchNorm frozen (formulas §5 recipe)."""

    epochs: int = Field(0, ge=0, description="0 disables fine-tuning")
    lr: float = Field(1e-4, gt=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(5e-4, ge=0.0)
    batch_size: int = Field(128, ge=1)


class StochasticConfig(StrictModel):
    """One Stochastic Pruning point (sigma, rate, samples) on a dense model (formulas §5).

    ``train`` is the dense model's run config: it is trained first unless a model file or
    an MLflow run supplies the model, and names the dataset, device and eval batch size.
    """

    train: RunConfig = Field(default_factory=RunConfig)
    sigma: float = Field(0.005, ge=0.0, description="absolute standard deviation of the weight noise")
    rate: float = Field(0.9, ge=0.0, lt=1.0, description="pruning rate r: fraction of the targeted weights removed")
    samples: int = Field(10, ge=1, description="noisy samples n; the best on the validation split is kept")
    seed: int = Field(0, ge=0, description="sample i draws its noise from derive_seed(seed, i) (formulas §9)")
    target: TargetConfig = Field(default_factory=TargetConfig)
    finetune: FinetuneConfig = Field(default_factory=FinetuneConfig)
    feature_variance: bool = Field(True, description="measure the per-layer feature variance (formulas §5)")
