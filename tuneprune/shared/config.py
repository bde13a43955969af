"""Typed, validated configuration: YAML loading, ``--set`` overrides, one-line errors.

Every config of tuneprune (a training run, a search space, an evolution, a relevance
study) is a pydantic model derived from :class:`StrictModel`. Any problem raises :class:`ConfigError`,
whose message is one line naming the field, the value and what is allowed; the CLI exits 2.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

M = TypeVar("M", bound=BaseModel)

# A search's, evolution's or study's name: a folder under the results directory (so not dots alone: '.', '..') and an
# MLflow run name.
NAME_PATTERN = r"^[A-Za-z0-9_.\-]*[A-Za-z0-9_\-][A-Za-z0-9_.\-]*$"
SEED_MAX = 2**32 - 1  # numpy's legacy RandomState, under scikit-learn's splits and Optuna's samplers
# An MLflow experiment: MLflow refuses an empty name and one over 500 characters (MAX_EXPERIMENT_NAME_LENGTH).
ExperimentName = Annotated[str, Field(min_length=1, max_length=500)]
# Run-config fields that say where a machine keeps the data and what it runs on, not what a run trains: a resumed or
# joined search may change them, and a run goes on from its checkpoint under other ones. An adaptive preset's file is
# read into A, B, C and D at load, which are compared. eval_batch_size is not among them: its batches sum val_loss in
# another order.
MACHINE_FIELDS = ("data_dir", "download", "num_threads", "device", "relevance.device", "sparsity.scheduler.preset")


class ConfigError(ValueError):
    """Bad user input. ``str(err)`` is a single line meant for the terminal."""


class StrictModel(BaseModel):
    """Base of every config section: unknown keys are errors, assignments re-validate."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    def _resolve(self, **values: Any) -> None:
        """Set fields derived in a validator (a preset's constants, a rule's value) without validating again."""
        self.__dict__.update(values)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping with ``safe_load``; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}:{where}: YAML syntax error: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the document must be a mapping of keys to values, got {type(data).__name__}")
    return data


def load_numbers(path: str | Path, keys: Sequence[str], what: str) -> dict[str, float]:
    """The finite numbers ``keys`` of the YAML mapping in ``path``; a missing, non-numeric or non-finite one is a
    one-line :class:`ConfigError` saying that ``what`` needs them."""
    data = load_yaml(path)
    try:
        numbers = {key: float(data[key]) for key in keys}
    except (KeyError, TypeError, ValueError):
        numbers = {}
    if len(numbers) < len(keys) or not all(map(math.isfinite, numbers.values())):
        raise ConfigError(f"{path}: {what} needs finite numbers {', '.join(keys[:-1])} and {keys[-1]}, got {data}")
    return numbers


def _tree_copy(value: Any) -> Any:
    """A copy of ``value`` in which no mapping or list is shared: a YAML alias (``*name``), read as its anchored node
    itself, becomes a copy of it, so that setting a path sets that path only."""
    if isinstance(value, dict):
        return {key: _tree_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_tree_copy(item) for item in value]
    return copy.deepcopy(value)


def apply_overrides(data: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Return a copy of ``data`` (:func:`_tree_copy`) with each ``dotted.key=value`` override applied."""
    result = _tree_copy(data)
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. sparsity.target=0.95")
        try:  # the right-hand side is a YAML scalar or flow collection, else the text itself
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        set_path(result, key.strip(), value)
    return result


def set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``data[a][b][c] = value`` for ``dotted = 'a.b.c'``, creating mappings on the way.

    A key that itself contains dots (the searched paths in a space's ``params`` and
    ``grid``) is matched whole: ``grid.sparsity.target`` sets ``data['grid']['sparsity.target']``.
    """
    node = data
    parts = dotted.split(".")
    walked: list[str] = []
    while True:
        # The longest dotted prefix of ``parts`` that is a key of ``node``, else its first part.
        n = next((n for n in range(len(parts), 1, -1) if ".".join(parts[:n]) in node), 1)
        key, rest = ".".join(parts[:n]), parts[n:]
        walked.append(key)
        if not rest:
            node[key] = value
            return
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{'.'.join(walked)}: is a value, cannot set {dotted}")
        node, parts = child, rest


def trained_fields(config: dict[str, Any]) -> dict[str, Any]:
    """A run config's JSON values less its :data:`MACHINE_FIELDS`: what it trains, on any machine."""
    trained = copy.deepcopy(config)
    for path in MACHINE_FIELDS:
        *sections, field = path.split(".")
        node: Any = trained
        for section in sections:
            node = node.get(section) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(field, None)
    return trained


def format_validation_error(err: ValidationError, prefix: str = "") -> str:
    """One line for the first error: ``field = value: problem``."""
    first = err.errors(include_url=False)[0]
    loc = ".".join(str(p) for p in first["loc"] if not str(p).startswith("function-"))
    loc = f"{prefix}{loc}" if loc else prefix.rstrip(".") or "config"
    if first["type"] == "extra_forbidden":
        return f"{loc}: unknown key"
    if first["type"] == "missing":
        return f"{loc}: required key is missing"
    value = first.get("input")
    shown = "" if isinstance(value, dict) else f" = {value!r}"
    return f"{loc}{shown}: {first['msg'].removeprefix('Value error, ')}"


def validate(model_cls: type[M], data: Any, prefix: str = "") -> M:
    """Validate ``data`` into ``model_cls``, raising a one-line :class:`ConfigError`."""
    try:
        return model_cls.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, prefix)) from None


def load_config(model_cls: type[M], path: str | Path | None, overrides: list[str] | None = None) -> M:
    """Load ``path`` (or start from defaults when ``None``), apply overrides, validate."""
    data = load_yaml(path) if path is not None else {}
    return validate(model_cls, apply_overrides(data, overrides))


def finite_or_inf(value: Any) -> float:
    """Accept a number or the strings ``inf``/``hard`` (for the formulas §1.2 operator exponent)."""
    if isinstance(value, str) and value.strip().lower() in {"inf", "+inf", "infinity", "hard"}:
        return math.inf
    return value
