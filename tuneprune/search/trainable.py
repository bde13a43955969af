"""The Ray Tune function trainable: one trial = one training run, tracked in its own MLflow child run.

It reports every epoch with ``ray.tune.report`` and a checkpoint; restarts from
``tune.get_checkpoint()`` when Tune restarts it after a worker death, or from the trial's
own checkpoint in the results directory when a resumed search re-runs a trial a dead
driver left behind. Under early stopping it asks its grid point's rungs
(:mod:`tuneprune.search.early_stop`) after every epoch but the last, and when told to
stop ends its run KILLED and returns, reporting the epoch it reached. Metrics are logged
once per epoch (step = epoch), after its checkpoint is written and before Tune takes it,
so a restarted trial loses at most the epoch in flight and continues one metric history,
each epoch once (formulas §10.8). A diverged trial (NaN/inf loss) ends at once,
FAILED with the reason, without being retried.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

from tuneprune.cluster.quiet import configure_quiet
from tuneprune.runs import TrialSpec, execute
from tuneprune.search.early_stop import StopTrial, ask
from tuneprune.search.protocol import TrialRequest, TrialResult
from tuneprune.shared.config import ConfigError
from tuneprune.tracking import RunTracker
from tuneprune.training import TrainingDiverged
from tuneprune.training.checkpoint import CHECKPOINT_NAME, load_run_state

WORST = {"max": float("-inf"), "min": float("inf")}


def run_device(name: str, gpus: float) -> Literal["cpu", "cuda"]:
    """The device a trial with ``gpus`` GPUs trains on for the config's ``device`` (``auto``, ``cpu``, ``cuda``):
    ``auto`` is CUDA exactly when the trial has GPUs (Ray hides the GPUs from a trial without). Resolved by the
    driver and recorded in the run's config, so that ``--from-run`` reproduces it."""
    if name == "auto":
        return "cuda" if gpus > 0 else "cpu"
    return "cuda" if name.startswith("cuda") else "cpu"


def restore_tune_checkpoint(trial_dir: Path, name: str, source_name: str | None = None) -> Path | None:
    """Tune's checkpoint after a worker restart (file ``source_name``, default ``name``), copied into the trial's
    directory as ``name``; else the trial's own latest checkpoint; None when there is neither."""
    from ray import tune

    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            source = Path(directory) / (source_name or name)
            if source.exists():
                trial_dir.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, trial_dir / name)
    own = trial_dir / name
    return own if own.exists() else None


def report(metrics: dict[str, Any], checkpoint_files: dict[str, Path] | None = None) -> None:
    """``tune.report`` of ``metrics``, with a Tune checkpoint holding ``checkpoint_files`` (name -> file) if any."""
    from ray import tune

    if not checkpoint_files:
        tune.report(metrics)
        return
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in checkpoint_files.items():
            shutil.copy2(path, Path(tmp) / name)
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))


def open_trial_run(tracker: RunTracker, request: TrialRequest, new: bool) -> str:
    """The trial's MLflow child run, opened by the driver as it hands the trial out: created with the trial's
    tags, params and config.json when ``new``, else (a trial a resumed search runs again) found and RUNNING again."""
    ctx = request.context
    run_id, created = tracker.child(
        ctx.parent_run_id,
        request.key,
        request.run_name,
        kind="trial",
        tags={"search.params": json.dumps(request.params), "search.grid": json.dumps(request.grid)},
        surely_new=new,
    )
    tracker.log_params(run_id, request.spec, new_run=created)
    if created:
        tracker.log_text(run_id, json.dumps(request.spec, indent=2), "config.json")
    return run_id


def where_it_runs() -> dict[str, Any]:
    """Tags of the Ray node and process a trial runs in, logged with the first batch a worker writes."""
    import ray

    return {"ray.node_id": ray.get_runtime_context().get_node_id(), "worker.pid": os.getpid()}


def replay_history(tracker: RunTracker, run_id: str, history: list[dict[str, Any]], logged: set[int]) -> None:
    """Log the epochs of a checkpoint's ``history`` the run lacks (``logged`` the steps it has, updated);
    tag where it resumed and runs."""
    tracker.log_metrics(run_id, {}, 0, tags={"resumed_from_epoch": len(history), **where_it_runs()})
    for entry in history:
        if int(entry["epoch"]) not in logged:
            tracker.log_metrics(run_id, entry, step=int(entry["epoch"]))
            logged.add(int(entry["epoch"]))


def run_trial(trial: dict[str, Any]) -> None:
    """Ray Tune function trainable (see module docstring); ``trial`` is a :class:`TrialRequest` as a dict.

    The final epoch is reported only after the model is saved and the run marked
    FINISHED, since a scheduler may stop the trial as soon as it sees that result.
    """
    configure_quiet()
    request = TrialRequest.from_dict(trial)
    ctx = request.context
    tracker = RunTracker.shared(ctx.tracking_uri, ctx.experiment)
    config = TrialSpec.model_validate(request.spec)  # threads and device resolved by the driver, as run
    epochs = config.epochs
    trial_dir = ctx.trial_dir(request.key)
    assert request.mlflow_run_id is not None  # opened by the driver (open_trial_run)
    run_id = request.mlflow_run_id
    resume = restore_tune_checkpoint(trial_dir, CHECKPOINT_NAME)
    logged: set[int] = set()  # a trial without a checkpoint has logged no epoch: its metrics follow its checkpoints
    unlogged_tags = where_it_runs()
    if resume is not None:
        logged = tracker.logged_steps(run_id, "val_acc")
        replay_history(tracker, run_id, load_run_state(resume)["history"], logged)
        unlogged_tags = {}
    last: dict[str, Any] = {}

    def log(metrics: dict[str, Any], step: int) -> None:
        nonlocal unlogged_tags
        tracker.log_metrics(run_id, metrics, step=step, tags=unlogged_tags)
        unlogged_tags = {}

    def end(status: str, error: str | None = None) -> None:
        log({}, 0)  # where it ran, if no epoch was logged
        tracker.finish(run_id, status, error)

    def reported(metrics: dict[str, Any], error: str | None = None) -> dict[str, Any]:
        result = TrialResult(metrics.get("epoch"), epochs, run_id, error, request.key, metrics=metrics)
        return result.to_dict()

    def on_epoch(metrics: dict[str, float], checkpoint: Path | None) -> None:
        step = int(metrics["epoch"])
        if step not in logged:
            log(metrics, step)
            logged.add(step)
        last.update(metrics)
        if step >= epochs:  # the last epoch is reported after the model is saved (below); formulas §10.8
            return
        if ask(ctx.stopper, [request.stop_ask(metrics)])[0]:
            raise StopTrial
        report(reported(metrics), {CHECKPOINT_NAME: checkpoint} if checkpoint else None)

    try:
        executed = execute(
            config,
            trial_dir,
            log,
            callbacks=[on_epoch],
            resume_from=resume,
        )
    except StopTrial:
        end("KILLED")
        report(reported(last))  # fewer epochs than configured: the driver tells Optuna PRUNED
        return
    except (TrainingDiverged, ConfigError) as err:
        end("FAILED", f"{type(err).__name__}: {err}")
        worst = {m: WORST[d] for m, d in ctx.objectives.items()}
        report(reported({"epoch": 0, **last, **worst}, str(err)))
        return
    except Exception as err:
        end("FAILED", f"{type(err).__name__}: {err}")
        raise
    assert executed.model_path is not None  # execute saved the model in trial_dir
    tracker.log_artifact(run_id, executed.model_path)
    end("FINISHED")
    # Reported last: a scheduler may stop the trial as soon as it sees its final epoch. No
    # checkpoint: the trial is done, and the driver deletes its checkpoints (SearchMonitor).
    report(reported(executed.result.final))
