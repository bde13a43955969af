"""A Ray Tune ``Searcher`` asking and telling the Optuna studies of a search.

Ray's own ``OptunaSearch`` keeps its state in a pickle that Tune snapshots now and then,
so a driver killed between snapshots forgets trials it had asked for; and it drives a
single study. This searcher keeps no state of its own that matters: the RDB study is the
record, trials left RUNNING by a dead driver are handed out again first (same number,
same checkpoint directory), and each grid point has its own study and sampler.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher

from tuneprune.search.protocol import TrialContext, TrialRequest, TrialResult
from tuneprune.search.space import METRICS, SearchSpace
from tuneprune.search.studies import GridStudy, distributions


def trial_key(grid_index: int, number: int) -> str:
    return f"g{grid_index}-{number:03d}"


def short_value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def trial_run_name(key: str, grid_point: dict[str, Any], params: dict[str, Any]) -> str:
    """``g1-007 target=0.95 alpha=0.13 mode=global``: the trial's key (its one name everywhere), then the last
    path component of each value. The MLflow run name and the Optuna user attribute ``name``."""
    parts = [f"{k.rsplit('.', 1)[-1]}={short_value(v)}" for k, v in {**grid_point, **params}.items()]
    return " ".join([key, *parts])


class StudySearcher(Searcher):
    """Suggest trial configs from the grid-point studies until each has its budget."""

    def __init__(self, space: SearchSpace, studies: list[GridStudy], context: TrialContext) -> None:
        super().__init__(metric=None, mode=None)
        self.space = space
        self.studies = studies
        self.context = context
        self.distributions = distributions(space)
        self.live: dict[str, tuple[GridStudy, optuna.trial.Trial]] = {}
        self._next = 0

    def set_search_properties(self, metric, mode, config, **spec) -> bool:  # noqa: ANN001
        return True

    def save(self, checkpoint_path: str) -> None:
        """Nothing to save: the studies' RDB storage is the searcher's state."""

    def restore(self, checkpoint_path: str) -> None:
        """Nothing to restore: see :meth:`save`."""

    def _take(self, gs: GridStudy) -> optuna.trial.Trial:
        if gs.orphans:
            number = gs.orphans.pop(0)
            frozen = gs.study.get_trials(deepcopy=False)[number]
            return optuna.trial.Trial(gs.study, frozen._trial_id)
        return gs.study.ask(self.distributions)

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        for offset in range(len(self.studies)):
            gs = self.studies[(self._next + offset) % len(self.studies)]
            if gs.remaining == 0:
                continue
            self._next = (gs.index + 1) % len(self.studies)
            trial = self._take(gs)
            self.live[trial_id] = (gs, trial)
            params = {k: trial.params[k] for k in self.distributions}
            run_config = self.space.resolve(gs.grid_point, params)
            key = trial_key(gs.index, trial.number)
            run_name = trial_run_name(key, gs.grid_point, params)
            trial.set_user_attr("key", key)
            trial.set_user_attr("name", run_name)
            return TrialRequest(
                key, trial.number, run_name, gs.grid_point, params, run_config.model_dump(mode="json"), self.context
            ).to_dict()
        return Searcher.FINISHED if not self.live else None

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id not in self.live:
            return
        gs, trial = self.live.pop(trial_id)
        reported = TrialResult.from_dict(result)
        if reported.mlflow_run_id:
            trial.set_user_attr("mlflow_run_id", reported.mlflow_run_id)
        final = {"epoch": reported.epoch, **{m: reported.value(m) for m in METRICS}}
        trial.set_user_attr("metrics", {k: v for k, v in final.items() if v is not None})
        values = [reported.value(m) for m in self.space.objectives]
        outcome = "failed" if error else reported.outcome()
        if outcome == "failed":
            trial.set_user_attr("error", "worker error" if reported.error is None else str(reported.error))
            gs.study.tell(trial, state=TrialState.FAIL)
        elif outcome == "killed" or any(v is None for v in values):
            gs.study.tell(trial, state=TrialState.PRUNED)
        else:
            gs.study.tell(trial, values if len(values) > 1 else values[0])
