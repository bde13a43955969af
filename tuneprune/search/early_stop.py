"""Early stopping per grid point (formulas §10.9): asynchronous successive halving (ASHA), one rung table per study.

Rungs are at ``grace_period * reduction_factor^k`` epochs up to the trials' epochs, Ray Tune's one bracket; a trial
reaching a rung is recorded there once, and decided by :func:`~tuneprune.search.rung_ranking.stops`. One
:class:`AshaRule` serves every trial of a search from a named Ray actor (:func:`start_stopper`) that the trainables
consult each epoch. Its tables are written to a JSON file, with the search they belong to, after every record and
read back before every decision, under the file's lock: the drivers of that search (--resume, --join) judge
against each other's records, and a decision is neither lost nor taken twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast

from tuneprune.search.rung_ranking import FrontOrder, stops
from tuneprune.shared.config import ConfigError
from tuneprune.shared.files import replace_atomically

if TYPE_CHECKING:  # ray is imported where an actor starts
    from ray.actor import ActorHandle

    from tuneprune.search.space import EarlyStoppingConfig

RUNGS_FILE = "early_stop.json"


def rung_count(grace_period: int, reduction_factor: float, max_t: int) -> int:
    """How many rungs ``grace_period * reduction_factor^k <= max_t`` epochs there are (formulas §10.9)."""
    return int(math.log(max_t / grace_period) / math.log(reduction_factor) + 1)


def check_rungs(config: EarlyStoppingConfig, max_t: int) -> None:
    """ASHA's rungs of ``config`` for trials of at most ``max_t`` epochs (the grace period capped there) must be no
    more than the whole epochs they can be at, ``g..max_t``: a one-line :class:`ConfigError` naming the smallest
    reduction factor allowed, ``(max_t / g)^(1 / (max_t - g + 1))`` (formulas §10.9), else. A factor just above 1
    gave thousands of rungs at fractions of one epoch, in the rule actor's tables and file, after Ray started."""
    grace_period = min(config.grace_period, max_t)
    epochs = max_t - grace_period + 1
    if config.type != "asha" or (count := rung_count(grace_period, config.reduction_factor, max_t)) <= epochs:
        return
    smallest = math.floor((max_t / grace_period) ** (1 / epochs) * 1e4) / 1e4 + 1e-4  # rounded up, strictly above
    raise ConfigError(
        f"early_stopping.reduction_factor = {config.reduction_factor}: gives {count} rungs, more than the {epochs} "
        f"whole epochs from grace_period {grace_period} to {max_t} they can be at; allowed: >= {smallest:g} for "
        f"grace_period {grace_period} and {max_t} epochs"
    )


class AshaRule:
    """Rung tables of ASHA per study; ``directions`` one ``'max'``/``'min'`` per objective; ``path`` the JSON record,
    read back when it is ``search``'s (the parent run id of the search the rule serves)."""

    def __init__(
        self,
        grace_period: int,
        reduction_factor: float,
        max_t: int,
        directions: Sequence[str],
        path: str | None = None,
        front_order: FrontOrder = "crowding",
        search: str | None = None,
    ) -> None:
        count = rung_count(grace_period, reduction_factor, max_t)
        self.rf = reduction_factor
        self.front_order = front_order
        self.directions = list(directions)
        self.milestones = [grace_period * reduction_factor**k for k in reversed(range(count))]
        self.path = Path(path) if path else None
        self.search = search
        # study -> milestone (as text, for JSON) -> trial key -> [*values, stopped]
        self.tables: dict[str, dict[str, dict[str, list]]] = {}
        self._load()

    def _load(self) -> None:
        """Take the tables of the record at ``path`` when it is this search's (another search's decide nothing)."""
        if self.path is not None and self.path.exists():
            record = json.loads(self.path.read_text())
            if record.get("search") == self.search:
                self.tables = record["tables"]

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the record's lock (``early_stop.json.lock`` beside it) while the tables are read, decided on and
        written."""
        if self.path is None:
            yield
            return
        with open(self.path.with_name(f"{self.path.name}.lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def should_stop(self, study: str, key: str, epoch: int, values: Sequence[float | None]) -> bool:
        """Record trial ``key`` of ``study`` at the highest rung ``epoch`` reaches (once); True when it is to stop.

        With one objective a missing or non-finite value is neither recorded nor stopped, as in Ray; with several
        it is recorded as NaN and ranks last.
        """
        with self._locked():
            self._load()
            return self._decide(study, key, epoch, values)

    def _decide(self, study: str, key: str, epoch: int, values: Sequence[float | None]) -> bool:
        numbers = [math.nan if v is None else float(v) for v in values]
        table = self.tables.setdefault(study, {})
        if any(rung.get(key, [False])[-1] for m, rung in table.items() if epoch >= float(m)):
            return True  # stopped before (a resumed search re-asks): the same decision
        if len(numbers) == 1 and not math.isfinite(numbers[0]):
            return False
        for milestone in self.milestones:
            rung = table.setdefault(f"{milestone:g}", {})
            if epoch < milestone or key in rung:
                continue
            stop = stops([row[:-1] for row in rung.values()], numbers, self.directions, self.rf, self.front_order)
            rung[key] = [*numbers, stop]
            self._save()
            return stop
        return False

    def _save(self) -> None:
        if self.path is None:
            return
        # a scratch file of its own: the rules of joined drivers sharing a results directory write this file too
        document = json.dumps({"search": self.search, "directions": self.directions, "tables": self.tables}).encode()
        replace_atomically(self.path, lambda fh: fh.write(document))


def start_stopper(
    name: str, config: EarlyStoppingConfig, max_t: int, directions: Sequence[str], path: Path, search: str
) -> ActorHandle[AshaRule]:
    """The :class:`AshaRule` of ``config`` for the search ``search`` (its parent run id) in a Ray actor called
    ``name`` on the driver's node (its tables in ``path`` there); the grace period is capped at ``max_t``, the
    trials' epochs."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    actor = ray.remote(num_cpus=0)(AshaRule).options(name=name, get_if_exists=True, scheduling_strategy=here)
    grace_period = min(config.grace_period, max_t)
    rule = (grace_period, config.reduction_factor, max_t, list(directions), str(path), config.front_order, search)
    # Ray types .remote() as ActorProxy (ActorHandle | type[AshaRule], for typed method calls); it returns the handle
    return cast("ActorHandle[AshaRule]", actor.remote(*rule))


def ask(stopper_name: str | None, asks: Sequence[tuple[str, str, int, Sequence[float | None]]]) -> list[bool]:
    """The decisions of the rule actor ``stopper_name`` for ``(study, key, epoch, values)`` asks, in one round trip."""
    if stopper_name is None or not asks:
        return [False] * len(asks)
    import ray

    stopper = ray.get_actor(stopper_name)
    return ray.get([stopper.should_stop.remote(*a) for a in asks])
