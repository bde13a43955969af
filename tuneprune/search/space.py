"""The search-space schema (``search_spaces/*.yaml``, docs/searches.md) and the resolution of trial configs.

Every grid point is an independent Optuna study; ``methods`` names overlays of ``base`` that the grid key
``method`` sweeps like a path. Every searched path and bound is checked against
:class:`~tuneprune.runs.TrialSpec` before anything runs.
"""

from __future__ import annotations

import copy
import functools
import itertools
import math
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import torch
from pydantic import Field, TypeAdapter, field_validator, model_validator
from torch import nn

from tuneprune.data.splits import classes_and_channels, image_size, train_size
from tuneprune.runs.spec import TrialSpec
from tuneprune.search.early_stop import check_rungs
from tuneprune.search.rung_ranking import FrontOrder
from tuneprune.shared.config import NAME_PATTERN, SEED_MAX, ConfigError, ExperimentName, StrictModel, set_path, validate
from tuneprune.sparsity.layers import pruned_layers
from tuneprune.training.trainer import check_last_batch, leaves_one, trains_on_one

# Metrics a trial reports every epoch; objectives must be among them (formulas §1-§4 engine metrics included).
SPARSE_METRICS = ("sparsity", "sparsity_k", "theta", "mask_stability", "mean_mask_stability", "lambda", "eliminated")
RELEVANCE_METRICS = ("pruned_acc", "pruned_loss", "pruned_fraction")  # of a trial with a ``relevance:`` point only
METRICS = (
    "val_acc", "test_acc", "train_acc", "val_loss", "test_loss", "train_loss", *SPARSE_METRICS, *RELEVANCE_METRICS,
)  # fmt: skip
METHOD = "method"  # the grid key that sweeps the named overlays of ``methods``
RAY_RESOURCE_UNIT = 0.0001  # the finest fraction of a CPU or GPU Ray takes (its resource granularity)


class _Range(StrictModel):
    """A searched number from ``low`` to ``high``, on a log scale with ``log``."""

    type: str
    low: float = Field(allow_inf_nan=False)  # Optuna samples between finite bounds only
    high: float = Field(allow_inf_nan=False)
    log: bool = False
    step: float | None = None

    @model_validator(mode="after")
    def _bounds(self) -> _Range:
        if self.low > self.high:
            raise ValueError(f"low = {self.low} is above high = {self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"log scale needs low > 0, got low = {self.low}")
        if self.log and self.step != type(self).model_fields["step"].default:  # Optuna: a log scale takes no step
            raise ValueError("step cannot be combined with log")
        return self

    def samples(self) -> list[Any]:
        return [self.low, self.high]


class FloatParam(_Range):
    type: Literal["float"]
    step: float | None = Field(None, gt=0)

    def samples(self) -> list[Any]:
        """The bounds and the value the sampler can draw next to ``low``: a fraction, so that a float searched
        for a whole-number field (``batch_size``) is refused before the search starts, not at its first trial."""
        inner = math.nextafter(self.low, self.high) if self.step is None else self.low + self.step
        return [self.low, self.high, *([inner] if inner < self.high else [])]

    def draws(self) -> Sequence[float] | None:
        """Every value the sampler can draw: ``low`` and each ``step`` above it up to ``high``; None without a step."""
        if self.step is None:
            return None
        return [self.low + k * self.step for k in range(int((self.high - self.low) // self.step) + 1)]


class IntParam(_Range):
    type: Literal["int"]
    low: int
    high: int
    step: int = Field(1, ge=1)

    def draws(self) -> Sequence[int]:
        """Every value the sampler can draw, on a log scale too (any int between the bounds)."""
        return range(self.low, self.high + 1, self.step)


class CategoricalParam(StrictModel):
    type: Literal["categorical"]
    choices: list[str | bool | int | float | None] = Field(min_length=1)

    def samples(self) -> list[Any]:
        return list(self.choices)

    def draws(self) -> Sequence[Any]:
        return self.choices


Param = Annotated[FloatParam | IntParam | CategoricalParam, Field(discriminator="type")]


class SamplerConfig(StrictModel):
    type: Literal["tpe", "nsga2", "cmaes", "gp", "random"] = "tpe"
    seed: int = Field(0, ge=0)


class EarlyStoppingConfig(StrictModel):
    type: Literal["asha", "none"] = "none"
    grace_period: int = Field(1, ge=1, description="epochs before a trial can be stopped (capped at the epochs)")
    reduction_factor: float = Field(2.0, gt=1.0)
    front_order: FrontOrder = Field(
        "crowding", description="order inside a front of a multi-objective rung (formulas §10.9)"
    )


class ResourcesConfig(StrictModel):
    """What one Ray trial actor gets; with ``pack: K`` the actor trains K trials together (formulas §10.7)."""

    cpu: float = Field(1.0, ge=RAY_RESOURCE_UNIT)
    gpu: float = Field(0.0, ge=0.0)
    pack: int = Field(1, ge=1, le=64, description="trials trained together in one actor, on one device")

    @field_validator("gpu")
    @classmethod
    def _gpu(cls, v: float) -> float:
        if v > 1 and not float(v).is_integer():
            raise ValueError("fractional GPUs must be at most 1 (e.g. 0.25); above 1 use a whole number")
        if 0 < v < RAY_RESOURCE_UNIT:
            raise ValueError(f"Ray takes no fraction below {RAY_RESOURCE_UNIT}, allowed: 0 or >= {RAY_RESOURCE_UNIT}")
        return v


class SearchSpace(StrictModel):
    """A validated search space; see the README for a full example."""

    name: str | None = Field(None, pattern=NAME_PATTERN)
    experiment: ExperimentName = "tuneprune"
    base: dict[str, Any] = Field(default_factory=dict)
    params: dict[str, Param] = Field(default_factory=dict, description="searched values; may be empty with a grid")
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    methods: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description=f"named overlays of base (dotted path -> value), swept by grid key {METHOD!r}"
    )
    objectives: dict[str, Literal["max", "min"]] = Field({"val_acc": "max"}, min_length=1)
    sampler: SamplerConfig = SamplerConfig()
    num_samples: int = Field(8, ge=1, description="trials per grid point")
    max_concurrent: int = Field(2, ge=1)
    early_stopping: EarlyStoppingConfig = EarlyStoppingConfig()
    resources: ResourcesConfig = ResourcesConfig()
    max_failures: int = Field(2, ge=0, description="restarts of a trial whose worker died")

    @field_validator("grid")
    @classmethod
    def _grid(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in v.items():
            if not values:
                raise ValueError(f"grid.{key}: empty list")
            twice = [x for i, x in enumerate(values) if x in values[:i]]
            if twice:  # one grid point twice would be one Optuna study driven twice (twice the trials, listed twice)
                raise ValueError(f"grid.{key}: {twice[0]!r} is listed twice")
            alike = [(a, b) for i, b in enumerate(values) for a in values[:i] if f"{a}" == f"{b}"]
            if alike:  # a grid point is named by its values printed (study_name, point_label): one study again
                a, b = alike[0]
                raise ValueError(f"grid.{key}: {a!r} and {b!r} print alike ({b}); list it once")
        return v

    @field_validator("objectives")
    @classmethod
    def _objectives(cls, v: dict[str, str]) -> dict[str, str]:
        for key in v:
            if key not in METRICS:
                raise ValueError(f"unknown metric {key!r}, allowed: {', '.join(METRICS)}")
        return v

    @model_validator(mode="after")
    def _sampler_fits(self) -> SearchSpace:
        if self.sampler.type == "cmaes":
            if len(self.objectives) > 1:
                raise ValueError("sampler cmaes supports one objective only; use tpe or nsga2")
            if any(isinstance(p, CategoricalParam) for p in self.params.values()):
                raise ValueError("sampler cmaes cannot search categorical params; use tpe")
        if overlap := set(self.params) & set(self.grid):
            raise ValueError(f"{sorted(overlap)[0]}: both searched in params and swept in grid")
        if not self.params and not self.grid:
            raise ValueError("params: nothing to search: give params, or a grid to sweep")
        if unknown := [m for m in self.grid.get(METHOD, []) if m not in self.methods]:
            raise ValueError(
                f"grid.{METHOD}: unknown method {unknown[0]!r}, allowed: {', '.join(self.methods) or 'none (no methods)'}"
            )
        if self.methods and METHOD not in self.grid:
            raise ValueError(f"methods: given but not swept, add grid.{METHOD}: [{', '.join(self.methods)}]")
        check_sampler_seed(self.sampler.seed, len(self.grid_points()) - 1)  # a new search's grid indices: 0 .. n-1
        return self

    # -- derived ----------------------------------------------------------------------------
    @property
    def directions(self) -> list[Literal["maximize", "minimize"]]:
        return ["maximize" if d == "max" else "minimize" for d in self.objectives.values()]

    def grid_points(self) -> list[dict[str, Any]]:
        """Every combination of the grid values, in order; ``[{}]`` without a grid."""
        keys = list(self.grid)
        return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(self.grid[k] for k in keys))]

    @functools.cached_property
    def specs(self) -> list[TrialSpec]:
        """The run config of every grid point, alone and with each param's samples (:func:`trial_specs`, every one
        checked): built once, by :func:`load_space`, and read by the search it starts."""
        return trial_specs(self)

    def resolve(self, grid_point: dict[str, Any], values: dict[str, Any]) -> TrialSpec:
        """The spec of one trial: base, then the grid point, then the searched values."""
        return validate(TrialSpec, self.trial_document(grid_point, values))

    def max_epochs(self) -> int:
        """The longest trials' epochs (the grid, the methods and a searched ``epochs`` may vary them): ASHA's
        ``max_t``."""
        searched = [int(v) for v in self.params["epochs"].samples()] if "epochs" in self.params else []
        return max([self.resolve(point, {}).epochs for point in self.grid_points()] + searched)

    def trial_document(self, grid_point: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
        """The run-config mapping :meth:`resolve` validates."""
        data = copy.deepcopy(self.base)
        # the trial's whole CPUs: the thread count changes a CPU run's numbers, so it is part of the config
        data.setdefault("num_threads", max(int(self.resources.cpu), 1))
        for path, value in {**grid_point, **values}.items():
            for key, item in self.methods[value].items() if path == METHOD else [(path, value)]:
                set_path(data, key, copy.deepcopy(item))
        return data


def check_sampler_seed(seed: int, largest_index: int) -> None:
    """Refuse, in one line, a ``sampler.seed`` that a grid point's sampler, seeded ``seed + i`` (``i``: its grid index,
    at most ``largest_index``), would take past the 32 bits Optuna's samplers accept."""
    if seed > (top := SEED_MAX - largest_index):
        raise ConfigError(
            f"sampler.seed = {seed}: grid point i's sampler takes seed + i, at most {SEED_MAX} (32 bits), allowed: "
            f"[0, {top}]"
        )


def load_space(data: dict[str, Any]) -> SearchSpace:
    """Validate a search-space document and all its paths (one-line :class:`ConfigError`): every param and grid
    path must exist in TrialSpec and accept its bounds and choices."""
    space = validate(SearchSpace, data)
    validate(TrialSpec, space.base, prefix="base.")
    check_methods_alone(space)
    for method in space.methods:
        try:
            space.resolve({METHOD: method}, {})
        except ConfigError as err:
            raise ConfigError(f"methods.{method}: not accepted by the run config ({err})") from None
    checks = [("grid", path, value) for path, values in space.grid.items() if path != METHOD for value in values]
    checks += [("params", path, value) for path, p in space.params.items() for value in p.samples()]
    read: dict[str, list[tuple[Any, dict[str, Any]]]] = {}  # grid path -> (value, the run config it gives)
    for section, path, value in checks:
        data = copy.deepcopy(space.base)
        try:
            set_path(data, path, value)
            trial = validate(TrialSpec, data).model_dump()
        except ConfigError as err:
            text = str(err)
            if "unknown key" in text or "is a value" in text:
                raise ConfigError(f"{section}.{path}: unknown config path ({text})") from None
            raise ConfigError(f"{section}.{path} = {value!r}: not accepted by the run config ({text})") from None
        if section == "grid":  # values the run config reads as one ('true' and true): one grid point twice
            if same := [v for v, t in read.setdefault(path, []) if t == trial]:
                raise ConfigError(
                    f"grid.{path}: {same[0]!r} and {value!r} are one value to the run config; list it once"
                )
            read[path].append((value, trial))
    space.specs  # noqa: B018 (built for its checks, kept for the search that starts)
    check_objectives_reported(space)
    check_rungs(space.early_stopping, space.max_epochs())
    return space


def check_methods_alone(space: SearchSpace) -> None:
    """No ``methods`` overlay sets a path the grid or the params also set, or a section holding one, or inside one:
    one would silently override the other (which one, for the grid, by its key order), and the trial's label lie."""
    swept = {path: f"grid.{path}" for path in space.grid if path != METHOD} | {p: f"params.{p}" for p in space.params}
    for method, overlay in space.methods.items():
        for path, (other, where) in itertools.product(overlay, swept.items()):
            if path == other or other.startswith(f"{path}.") or path.startswith(f"{other}."):
                raise ConfigError(
                    f"methods.{method}: sets {path}, which {where} also sets: one would silently override the other "
                    f"and the trial's label could lie; set it in one place"
                )


def point_label(point: dict[str, Any]) -> str:
    """``sparsity.target=0.99 seed=0``: a grid point in one line."""
    return " ".join(f"{k}={v}" for k, v in point.items())


def trial_specs(space: SearchSpace) -> list[TrialSpec]:
    """The run config of every grid point, alone and with each param's :meth:`samples` one at a time: values the run
    config accepts one by one over ``base`` may be refused together (a ``fitted:PATH`` alpha swept beside a target
    past the rule's range, formulas §2), and every trial of that grid point would fail after Ray started; so would a
    trial on ``device: cuda`` (or ``relevance.device``) without ``resources.gpu`` (Ray hides the GPUs from an actor that
    asks for none), one whose model has no layer of ``sparsity.min_size`` weights and one whose ``batch_size`` (a
    searched one at every value it can draw, :func:`batch_sizes`) leaves a last batch of one image. Each is a one-line
    :class:`ConfigError` naming it."""
    drawn = [(path, value) for path, p in space.params.items() for value in p.samples()]
    sizes = batch_sizes(space)
    specs = []
    for point in space.grid_points():
        for values in [{}, *({path: value} for path, value in drawn)]:
            parts = [f"grid point {point_label(point)}"] if point else ["base"]
            where = " with ".join([*parts, *(f"params.{path} = {value!r}" for path, value in values.items())])
            try:
                spec = space.resolve(point, values)
            except ConfigError as err:
                raise ConfigError(f"{where}: not accepted by the run config ({err})") from None
            devices = {"device": spec.device, "relevance.device": spec.relevance and spec.relevance.device}
            if "cuda" in devices.values() and not space.resources.gpu:
                field = next(k for k, v in devices.items() if v == "cuda")
                raise ConfigError(
                    f"{where}: {field} = 'cuda' with resources.gpu = 0: Ray hides the GPUs from a trial that asks for "
                    f"none, allowed: {field} auto or cpu, or resources.gpu > 0"
                )
            try:
                check_min_size(spec)
                check_batches(spec, None if "batch_size" in values else sizes)
            except ConfigError as err:
                raise ConfigError(f"{where}: {err}") from None
            specs.append(spec)
    return specs


def batch_sizes(space: SearchSpace) -> Sequence[int] | None:
    """Every value a searched ``batch_size`` can draw, as the run config reads it (``68.0`` or ``"68"`` as 68); None
    when it is not searched or has no step (a float, refused at its fractional sample)."""
    drawn = space.params["batch_size"].draws() if "batch_size" in space.params else None
    if drawn is None or isinstance(drawn, range):  # an int range: ints already, and maybe long
        return drawn
    return TypeAdapter(list[int]).validate_python(drawn)


@functools.lru_cache(maxsize=1)  # grid points in turn mostly share a model; one kept at a time
def _model(name: str, classes: int, channels: int) -> nn.Module:
    """A model of the registry, for :func:`check_min_size` and :func:`check_batches`."""
    from tuneprune.models import create_model

    return create_model(name, classes, channels)


def check_min_size(spec: TrialSpec) -> None:
    """A sparse trial's model has a layer of at least ``sparsity.min_size`` weights (:func:`pruned_layers`), which
    a run finds only once it has built its model: checked here on the model built without its data."""
    if spec.sparsity is not None and spec.sparsity.min_size > 0:
        model = _model(spec.model, *classes_and_channels(spec.dataset, spec.synthetic_classes))
        pruned_layers(model, spec.sparsity.min_size)


def check_batches(spec: TrialSpec, searched: Sequence[int] | None = None) -> None:
    """A trial's training images (:func:`train_size`, by the splits its data will have) in batches of ``batch_size``
    leave no batch of one image its model cannot train on (:func:`check_last_batch`), which a run finds only once it
    has loaded its data: checked here on the model built without its data, on an image of zeros. With ``searched``,
    every ``batch_size`` a searched param can draw is checked in place of the spec's own, refused together in one line
    naming the first few that leave one image."""
    n = train_size(spec)
    one = [b for b in ([spec.batch_size] if searched is None else searched) if leaves_one(n, b)]
    if not one:
        return
    classes, channels = classes_and_channels(spec.dataset, spec.synthetic_classes)
    side = image_size(spec)
    model, image = _model(spec.model, classes, channels), torch.zeros(1, channels, side, side)
    if searched is None:
        check_last_batch(model, spec, n, image)  # in the words of the trial's own check
    elif not trains_on_one(model, image):
        few = ", ".join(map(str, one[:5])) + (f" and {len(one) - 5} more ({len(one)} values)" if len(one) > 5 else "")
        raise ConfigError(
            f"params.batch_size can draw {few}, leaving a last batch of 1 of the {n} training images, and "
            f"{spec.model}'s BatchNorm cannot train on one image; allowed: a range, step or choices without them "
            f"({n} mod batch_size != 1, batch_size >= 2)"
        )


def check_objectives_reported(space: SearchSpace) -> None:
    """Every objective must be a metric the trials report (a dense trial none of :data:`SPARSE_METRICS`, one without
    a ``relevance`` point none of :data:`RELEVANCE_METRICS`): else they would all train and be PRUNED."""
    first = {path: p.samples()[0] for path, p in space.params.items()}
    for point in space.grid_points():
        trial = space.trial_document(point, first)
        for metric in space.objectives:
            if metric in SPARSE_METRICS and trial.get("sparsity") is None:
                lacks = "train dense (no sparsity section)"
            elif metric in RELEVANCE_METRICS and trial.get("relevance") is None:
                lacks = "have no relevance point"
            else:
                continue
            where = point_label(point)
            trials = f"the trials at {where}" if where else "the trials"
            raise ConfigError(f"objectives.{metric}: {trials} {lacks} and do not report it")
