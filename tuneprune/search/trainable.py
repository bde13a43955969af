"""The Ray Tune function trainable: K >= 1 trials of a search trained together in one actor (formulas §10.7).

Every Ray trial runs :func:`run_trial` on a :class:`~tuneprune.search.protocol.PackRequest` (one trial is a pack
of one) with :class:`~tuneprune.training.PackedTrainer`. Each member is its own trial everywhere but in Ray: its
own Optuna trial, MLflow child run, checkpoints (``checkpoint-<epoch>.pt`` in its trial directory), model and
status. Every epoch the pack reports each member's :class:`~tuneprune.search.protocol.TrialResult` under
``members``, with a Tune checkpoint of the open members' states; a member that ended (finished, stopped early by
its rungs, diverged) is marked ``ended`` and the pack goes on with the others.

Restarts (formulas §10.8: an epoch's metrics, checkpoint and report, in that order): after a worker death Tune
restarts the pack from its last Tune checkpoint; a trial a resumed search hands out again goes on from its
``resume_epoch``. A member logs each epoch once (step = epoch); an error of the whole pack is raised for Ray.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from tuneprune.cluster.quiet import configure_quiet
from tuneprune.runs import TrialSpec
from tuneprune.runs.execute import conclude
from tuneprune.search.early_stop import ask
from tuneprune.search.protocol import MEMBERS, PackRequest, TrialRequest, TrialResult
from tuneprune.shared.config import ConfigError
from tuneprune.tracking import RunTracker
from tuneprune.training import MemberResult, PackedTrainer
from tuneprune.training.checkpoint import MemberState, load_member, save_member

WORST = {"max": float("-inf"), "min": float("inf")}
_CHECKPOINT = re.compile(r"checkpoint-(\d+)\.pt")


def run_device(name: str, gpus: float) -> Literal["cpu", "cuda"]:
    """The device a trial with ``gpus`` GPUs trains on for the config's ``device``: ``auto`` is CUDA exactly when
    the trial has GPUs. Resolved by the driver and recorded in the run's config, so that ``--from-run`` reproduces
    it."""
    if name == "auto":
        return "cuda" if gpus > 0 else "cpu"
    return "cuda" if name.startswith("cuda") else "cpu"


def trial_checkpoint(trial_dir: Path, epoch: int) -> Path:
    """A trial's checkpoint after ``epoch`` epochs (a run state) in its directory."""
    return trial_dir / f"checkpoint-{epoch}.pt"


def trial_checkpoints(trial_dir: Path) -> dict[int, Path]:
    """The trial's checkpoints on disk by epoch (each whole: written atomically)."""
    if not trial_dir.is_dir():
        return {}
    matches = (_CHECKPOINT.fullmatch(path.name) for path in trial_dir.iterdir())
    return {int(m.group(1)): trial_dir / m.group(0) for m in matches if m is not None}


def resumable_epoch(trial_dir: Path, recorded: int) -> int:
    """The epoch a trial handed out again goes on from: the one recorded for it if that checkpoint is on disk,
    else 0 (it ended: it starts over)."""
    return recorded if recorded and trial_checkpoint(trial_dir, recorded).exists() else 0


def drop_checkpoints_before(trial_dir: Path, epoch: int | None = None) -> None:
    """Delete the trial's checkpoints of epochs before ``epoch`` (all of them for None)."""
    for number, path in trial_checkpoints(trial_dir).items():
        if epoch is None or number < epoch:
            path.unlink(missing_ok=True)


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
    """The trial's MLflow child run, opened by the driver as it hands the trial out: created with its tags, params
    and config.json when ``new``, else found and RUNNING again."""
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


class _Member:
    """One member's request, spec, MLflow run, logged epochs and latest result, as the trainable tracks them."""

    def __init__(self, request: TrialRequest, spec: TrialSpec, tracker: RunTracker, state: MemberState | None) -> None:
        import ray

        assert request.mlflow_run_id is not None  # opened by the driver (open_trial_run)
        self.request, self.spec, self.tracker, self.run_id = request, spec, tracker, request.mlflow_run_id
        self.dir = request.context.trial_dir(request.key)
        # The epochs its run has: an attempt killed after logging an epoch and before Tune took that
        # epoch's checkpoint logged one more than this attempt starts from.
        self.logged = tracker.logged_steps(self.run_id, "val_acc")
        # the Ray node and process it runs in, logged with the member's first batch
        self.tags: dict[str, Any] = {"ray.node_id": ray.get_runtime_context().get_node_id(), "worker.pid": os.getpid()}
        epoch = int(state["epoch"]) if state is not None else 0
        if state is not None:  # log the epochs of its history the run lacks
            self.tags["resumed_from_epoch"] = epoch
            for entry in state["history"]:
                self.log_epoch(entry)
        self.result = TrialResult(epoch, spec.epochs, self.run_id, None, request.key, False)

    def log(self, metrics: dict[str, Any], step: int) -> None:
        """Log ``metrics`` at ``step`` (with the tags not logged yet)."""
        self.tracker.log_metrics(self.run_id, metrics, step=step, tags=self.tags)
        self.tags = {}

    def log_epoch(self, metrics: dict[str, Any]) -> None:
        """Log an epoch's metrics once (a restarted member redoes epochs it may have logged)."""
        step = int(metrics["epoch"])
        if step not in self.logged:
            self.log(metrics, step)
            self.logged.add(step)

    def end(self, detail: str | None = None) -> None:
        """End the member's run with the status of its (ended) result (:meth:`TrialResult.end_run`)."""
        self.log({}, 0)  # where it ran, if no epoch was logged
        self.result.end_run(self.tracker, detail)

    def update(self, metrics: dict[str, Any], ended: bool, error: str | None = None) -> None:
        epoch = int(metrics.get("epoch", self.result.epoch or 0))
        self.result = replace(self.result, epoch=epoch, error=error, ended=ended, metrics=metrics)


def _ended_run(tracker: RunTracker, request: TrialRequest, epochs: int) -> dict[str, Any]:
    """The result of a member that ended before its pack was restarted, as its MLflow run tells it."""
    assert request.mlflow_run_id is not None  # opened by the driver (open_trial_run)
    run = tracker.client.get_run(request.mlflow_run_id)
    metrics = run.data.metrics
    error = run.data.tags.get("error", "ended") if run.info.status == "FAILED" else None
    return TrialResult(
        int(metrics.get("epoch", 0)), epochs, request.mlflow_run_id, error, request.key, True, metrics
    ).to_dict()


def _restored_states(pack: PackRequest) -> list[MemberState | Literal["ended"] | None]:
    """Each member's state to go on from: Tune's checkpoint after a worker restart ("ended" for a member not in it),
    else its checkpoint of ``resume_epoch``, else None."""
    from ray import tune

    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            files = [Path(directory) / f"{request.key}.pt" for request in pack.members]
            return [load_member(path) if path.exists() else "ended" for path in files]
    return [
        load_member(trial_checkpoint(pack.context.trial_dir(r.key), r.resume_epoch)) if r.resume_epoch else None
        for r in pack.members
    ]


def run_trial(config: dict[str, Any]) -> None:
    """Ray Tune function trainable of a :class:`PackRequest` (see the module docstring)."""
    configure_quiet()
    pack = PackRequest.from_dict(config)
    ctx = pack.context
    tracker = RunTracker.shared(ctx.tracking_uri, ctx.experiment)
    ended: dict[str, dict[str, Any]] = {}  # members whose runs ended before a restart, as reported
    members: list[_Member] = []
    states: list[MemberState | None] = []
    for request, state in zip(pack.members, _restored_states(pack), strict=True):
        spec = TrialSpec.model_validate(request.spec)  # threads and device resolved by the driver, as run
        if state == "ended":
            ended[request.key] = _ended_run(tracker, request, spec.epochs)
            continue
        members.append(_Member(request, spec, tracker, state))
        states.append(state)
    if not members:
        report({MEMBERS: ended})
        return
    try:
        trainer = PackedTrainer(
            [m.spec for m in members], resume=states if any(s is not None for s in states) else None
        )
        del states  # the trainer holds the members' weights now
        _train(trainer, members, ended, ctx.stopper)
    except ConfigError as err:  # the pack cannot train: its open members fail, the search goes on
        for member in members:
            if not member.result.ended:
                member.update({}, ended=True, error=str(err))
                member.end(f"ConfigError: {err}")
        report({MEMBERS: {**ended, **{m.request.key: m.result.to_dict() for m in members}}})


def _train(
    trainer: PackedTrainer,
    members: list[_Member],
    ended: dict[str, dict[str, Any]],
    stopper: str | None,
) -> None:
    """Train the open members to their ends; each epoch's bookkeeping (:func:`_book_epoch`, formulas §10.8) runs
    on its own thread while the next epoch trains, one in flight at most, its error raised in the training thread."""
    open_members = set(range(len(members)))
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tuneprune-epoch") as bookkeeping:
        pending: Future[None] | None = None
        while open_members:
            reports = trainer.train_epoch()
            running = [i for i in sorted(open_members) if trainer.members[i].status == "running"]
            candidates = running if trainer.epoch < trainer.epochs else []  # no stop is asked after the last epoch
            asks = [members[i].request.stop_ask(trainer.members[i].history[-1]) for i in candidates]
            for i, stop in zip(candidates, ask(stopper, asks), strict=True):
                if stop:
                    trainer.stop(i)
            metrics = {i: reports.get(i) for i in sorted(open_members)}  # None: diverged in this epoch
            closed = {i: trainer.members[i] for i in open_members if trainer.members[i].status != "running"}
            open_members -= closed.keys()
            states = {i: trainer.member_state(i) for i in open_members}
            if pending is not None:
                pending.result()  # raises what the last epoch's bookkeeping raised
            pending = bookkeeping.submit(
                _book_epoch, members, ended, (trainer.epoch, trainer.epochs), metrics, closed, states
            )
        if pending is not None:
            pending.result()


def _book_epoch(
    members: list[_Member],
    ended: dict[str, dict[str, Any]],
    progress: tuple[int, int],
    metrics: dict[int, dict[str, float] | None],
    closed: dict[int, MemberResult],
    states: dict[int, MemberState],
) -> None:
    """The bookkeeping of epoch ``progress = (epoch, epochs)``: log the ``metrics`` (None: diverged in it), end the
    ``closed`` members' runs, write the open members' checkpoints of their ``states``, then report."""
    number, epochs = progress
    for i, latest in metrics.items():
        if latest is not None:
            members[i].log_epoch(latest)
        if i in closed:
            _settle(members[i], closed[i])
            drop_checkpoints_before(members[i].dir)
        else:
            assert latest is not None  # an open member trained this epoch
            members[i].update(latest, ended=False)
    files = {
        f"{members[i].request.key}.pt": save_member(state, trial_checkpoint(members[i].dir, number))
        for i, state in states.items()
    }
    results = {**ended, **{m.request.key: m.result.to_dict() for m in members}}
    report({"epoch": number, "epochs": epochs, MEMBERS: results}, files)


def _settle(member: _Member, state: MemberResult) -> None:
    """End the run of a member that finished, diverged or was stopped (MLflow status, model, result)."""
    latest = state.history[-1] if state.history else {}
    if state.status == "failed":
        worst = {name: WORST[d] for name, d in member.request.context.objectives.items()}
        member.update({"epoch": 0, **latest, **worst}, ended=True, error=state.error)
        member.end(f"TrainingDiverged: {state.error}")
    elif state.status == "stopped":
        member.update(latest, ended=True)  # fewer epochs than configured: KILLED, and the driver tells Optuna PRUNED
        member.end()
    else:
        assert state.result is not None  # a finished member holds its result
        executed = conclude(member.spec, state.result, member.dir, member.log)
        assert executed.model_path is not None  # conclude saved the model in member.dir
        member.tracker.log_artifact(member.run_id, executed.model_path)
        member.update(executed.result.final, ended=True)
        member.end()
