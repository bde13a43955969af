"""Parameter importances of a search: Optuna's fANOVA on the study of each grid point, per objective (formulas §8)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from tuneprune.reports.trials import SearchData
from tuneprune.shared.config import ConfigError
from tuneprune.tracking import check_storage_reachable, store_missing

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial


def objective_value(trial: FrozenTrial, index: int) -> float:
    """The trial's value of objective ``index`` (what a multi-objective importance is computed on)."""
    return trial.values[index]


def study_importances(data: SearchData) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows ``(study, objective, param, importance)`` and a note for every study where they cannot be computed: with
    fewer than two complete trials, no searched parameter that takes more than one value among them, or an objective
    that does not; one note when the search's Optuna storage is gone (a SQLite file) or out of reach (a database server)."""
    import optuna
    from optuna.trial import TrialState

    from tuneprune.search.studies import open_storage, study_name

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = data.source.summary["storage_url"]
    if store_missing(url):  # opening it would create an empty one, without the search's studies
        return [], [f"not computable: no Optuna storage at {url}"]
    try:
        check_storage_reachable(url)
    except ConfigError as err:
        return [], [f"not computable: {err}"]
    storage = open_storage(url)
    rows, notes = [], []
    for point in data.space.grid_points():
        name = study_name(data.source.name, point)
        study = optuna.load_study(study_name=name, storage=storage)
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        varying = [p for p in data.space.params if len({repr(t.params.get(p)) for t in complete}) > 1]
        if len(complete) < 2 or not varying:
            notes.append(
                f"{name}: not computable ({len(complete)} complete trials, {len(varying)} searched parameters that vary)"
            )
            continue
        for i, objective in enumerate(data.objectives):
            if len({t.values[i] for t in complete}) < 2:
                notes.append(f"{name}: not computable for {objective} (the same value in every complete trial)")
                continue
            evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
            target = functools.partial(objective_value, index=i)
            scores = optuna.importance.get_param_importances(study, evaluator=evaluator, params=varying, target=target)
            rows += [
                {"study": name, "objective": objective, "param": p, "importance": float(v)} for p, v in scores.items()
            ]
    return rows, notes
