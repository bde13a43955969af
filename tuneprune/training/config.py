"""The configuration of one training run (dense or sparse), formulas §1.6 defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from tuneprune.data import DATASETS
from tuneprune.models import MODELS
from tuneprune.shared.config import SEED_MAX, StrictModel
from tuneprune.sparsity.adaptive import ModelFamily
from tuneprune.sparsity.config import SparsityConfig


class RunConfig(StrictModel):
    """One training run. Every field can be overridden with ``--set key=value``."""

    model: str = Field("small_cnn", description=f"one of {', '.join(sorted(MODELS))}")
    dataset: str = Field("digits", description=f"one of {', '.join(DATASETS)}")
    data_dir: Path | None = Field(
        None,
        description="directory holding CIFAR, MNIST or FashionMNIST data (torchvision layout); mnist/fashion_mnist default to /usr/share/datasets",
    )
    download: bool = Field(False, description="let torchvision download CIFAR into data_dir")
    image_size: int | None = Field(
        None,
        ge=8,
        le=64,
        description="digits: 8 (native) or upsampled, default 32 for CIFAR models; mnist/fashion_mnist: 28 (native) or resized",
    )
    val_fraction: float = Field(0.1, gt=0.0, lt=0.5, description="fraction of the training set held out for validation")
    train_samples: int | None = Field(
        None, ge=10, description="train on only this many training images (a random subset, drawn by seed); null: all"
    )
    augment: bool | None = Field(
        None, description="random crop + flip (formulas §1.6); default on for CIFAR, off for digits"
    )
    synthetic_samples: int = Field(512, ge=16, description="synthetic: number of samples")
    synthetic_classes: int = Field(10, ge=2, description="synthetic: number of classes")
    seed: int = Field(0, ge=0, le=SEED_MAX, description="data split, initialisation and data order (32 bits)")

    epochs: int = Field(160, ge=1)
    batch_size: int = Field(128, ge=1)
    eval_batch_size: int = Field(1024, ge=1)
    lr: float = Field(0.1, gt=0.0, allow_inf_nan=False)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    nesterov: bool = False
    weight_decay: float = Field(5e-4, ge=0.0, allow_inf_nan=False)
    lr_schedule: Literal["cosine", "constant"] = "cosine"
    grad_clip: float | None = Field(3.0, gt=0.0, description="max gradient norm, null to disable")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_threads: int | None = Field(None, ge=1, description="torch CPU threads (recorded so runs reproduce exactly)")
    precision: Literal["fp32", "bf16"] = Field("fp32", description="bf16: forward and loss under bfloat16 autocast")
    channels_last: bool = Field(False, description="model and batches in the channels_last memory format")

    sparsity: SparsityConfig | None = Field(None, description="sparse training settings; null trains dense")

    @model_validator(mode="before")
    @classmethod
    def _scheduler_family(cls, data: Any) -> Any:
        """An adaptive preset's D depends on the model family (formulas §3): set ``sparsity.scheduler.family`` from ``model``."""
        if not isinstance(data, dict) or not isinstance(data.get("sparsity"), dict):
            return data
        scheduler = data["sparsity"].get("scheduler")
        if not isinstance(scheduler, dict) or "family" in scheduler or not isinstance(data.get("model", ""), str):
            return data
        family = ModelFamily.of(data.get("model", "small_cnn"))
        return {**data, "sparsity": {**data["sparsity"], "scheduler": {**scheduler, "family": family}}}

    @field_validator("model", "dataset")
    @classmethod
    def _registered(cls, v: str, info: ValidationInfo) -> str:
        allowed = sorted(MODELS) if info.field_name == "model" else DATASETS
        if v not in allowed:
            raise ValueError(f"unknown {info.field_name}, allowed: {', '.join(allowed)}")
        return v

    @model_validator(mode="after")
    def _pruning_starts(self) -> RunConfig:
        """A cubic schedule from ``start_epoch >= end_fraction * epochs`` (k0 >= k1) jumps to its target in one step, or
        never prunes from ``start_epoch >= epochs`` (formulas §1.5): :meth:`SchedulerConfig.check_cubic_start`; an
        adaptive one after ``warmup_epochs >= epochs`` never adapts (formulas §9): the run would stay in its warm-up."""
        scheduler = None if self.sparsity is None else self.sparsity.scheduler
        if scheduler is None:
            return self
        scheduler.check_cubic_start(self.epochs)
        if scheduler.type == "adaptive" and scheduler.warmup_epochs >= self.epochs:
            raise ValueError(
                f"sparsity.scheduler.warmup_epochs = {scheduler.warmup_epochs}: the adaptive schedule would take over "
                f"after the last of the {self.epochs} epochs (formulas §9), allowed: [0, {self.epochs})"
            )
        return self

    @model_validator(mode="after")
    def _data_dir(self) -> RunConfig:
        """``~`` in ``data_dir`` is the home directory, as in a shell; CIFAR needs a ``data_dir``."""
        if self.data_dir is not None:
            self._resolve(data_dir=self.data_dir.expanduser())
        if self.dataset.startswith("cifar") and self.data_dir is None:
            raise ValueError(
                f"data_dir is required for {self.dataset} (a directory holding the torchvision CIFAR files)"
            )
        return self
