"""The Ray Tune function trainable of a pack: K trials of a search trained together in one actor (formulas §10.7).

Each member is its own trial everywhere but in Ray: its own Optuna trial, its own MLflow
child run with its per-epoch metrics, its checkpoint (in its trial directory), saved
model and status. Every epoch the pack reports one result with each member's
:class:`~tuneprune.search.protocol.TrialResult` under ``members``; a member that ended
(finished, stopped early by its grid point's rungs in :class:`~tuneprune.search.early_stop.AshaRule`,
or diverged) is marked ``ended`` and the pack goes on with the others. A restarted pack
(worker death, or a resumed search) continues each member from its own checkpoint, and
leaves out members whose MLflow run already ended.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuneprune.cluster.quiet import configure_quiet
from tuneprune.packing import PackedTrainer
from tuneprune.packing.checkpoint import MEMBER_CHECKPOINT, load_member, save_member
from tuneprune.runs import TrialSpec
from tuneprune.runs.execute import conclude
from tuneprune.search.early_stop import ask
from tuneprune.search.protocol import MEMBERS, PackRequest, TrialRequest, TrialResult
from tuneprune.search.trainable import replay_history, report, restore_tune_checkpoint, where_it_runs
from tuneprune.shared.config import ConfigError
from tuneprune.tracking import RunTracker


def resume_epoch(trial_dir: Path) -> int:
    """The epoch a trial restarts from in a pack: its member checkpoint's, or 0 without one."""
    path = trial_dir / MEMBER_CHECKPOINT
    return int(load_member(path)["epoch"]) if path.exists() else 0


def _ended_run(tracker: RunTracker, request: TrialRequest, epochs: int) -> TrialResult | None:
    """The result of a member whose MLflow run already ended (a restarted pack leaves it out), else None."""
    assert request.mlflow_run_id is not None  # opened by the driver (open_trial_run)
    run_id = request.mlflow_run_id
    run = tracker.client.get_run(run_id)
    if run.info.status == "RUNNING":
        return None
    metrics = run.data.metrics
    error = run.data.tags.get("error", "ended") if run.info.status == "FAILED" else None
    return TrialResult(int(metrics.get("epoch", 0)), epochs, run_id, error, request.key, True, metrics)


class _Member:
    """One member's trial request, spec, MLflow run and latest result, as the pack trainable tracks it."""

    def __init__(self, request: TrialRequest, spec: TrialSpec, run_id: str, epoch: int) -> None:
        self.request, self.spec, self.run_id = request, spec, run_id
        self.dir = request.context.trial_dir(request.key)
        self.result = TrialResult(epoch, spec.epochs, run_id, None, request.key, False)

    def update(self, metrics: dict[str, Any], ended: bool, error: str | None = None) -> None:
        r = self.result
        self.result = TrialResult(
            int(metrics.get("epoch", r.epoch or 0)), r.epochs, r.mlflow_run_id, error, r.trial_key, ended, metrics
        )


def run_pack(config: dict[str, Any]) -> None:
    """Ray Tune function trainable of a :class:`PackRequest` (see the module docstring)."""
    configure_quiet()
    pack = PackRequest.from_dict(config)
    ctx = pack.context
    tracker = RunTracker.shared(ctx.tracking_uri, ctx.experiment)
    ended: dict[str, dict[str, Any]] = {}  # members whose runs ended before this start, as reported
    members: list[_Member] = []
    states: list[dict[str, Any] | None] = []
    for request in pack.members:
        spec = TrialSpec.model_validate(request.spec)  # threads and device resolved by the driver, as run
        done = _ended_run(tracker, request, spec.epochs)
        if done is not None:
            ended[request.key] = done.to_dict()
            continue
        run_id = request.mlflow_run_id
        assert run_id is not None  # opened by the driver (open_trial_run)
        logged = tracker.logged_steps(run_id, "val_acc")  # a member logs an epoch before its checkpoint is saved
        trial_dir = ctx.trial_dir(request.key)
        path = restore_tune_checkpoint(trial_dir, MEMBER_CHECKPOINT, f"{request.key}.pt")
        state = load_member(path) if path is not None else None
        if state is not None:
            replay_history(tracker, run_id, state["history"], logged)
        else:
            tracker.log_metrics(run_id, {}, 0, tags=where_it_runs())
        members.append(_Member(request, spec, run_id, int(state["epoch"]) if state else 0))
        states.append(state)
    if not members:
        report({MEMBERS: ended})
        return

    try:
        trainer = PackedTrainer(
            [m.spec for m in members], resume=states if any(s is not None for s in states) else None
        )
        del states  # the trainer holds the members' weights now
        _train(trainer, members, ended, tracker, ctx.stopper)
    except BaseException as err:  # the pack cannot go on: none of its open members is left RUNNING
        open_members = [m for m in members if not m.result.ended]
        for member in open_members:
            tracker.finish(member.run_id, "FAILED", f"{type(err).__name__}: {err}")
        if not isinstance(err, ConfigError):
            raise
        for member in open_members:
            member.update({}, ended=True, error=str(err))
        report({MEMBERS: {**ended, **{m.request.key: m.result.to_dict() for m in members}}})


def _train(
    trainer: PackedTrainer,
    members: list[_Member],
    ended: dict[str, dict[str, Any]],
    tracker: RunTracker,
    stopper: str | None,
) -> None:
    """Train the open members to their ends, reporting every epoch with the members' checkpoints."""

    def log_epoch(index: int, metrics: dict[str, float]) -> None:
        tracker.log_metrics(members[index].run_id, metrics, step=int(metrics["epoch"]))

    open_members = set(range(len(members)))
    while open_members:
        trainer.train_epoch([log_epoch])
        candidates = [
            i for i in sorted(open_members) if trainer.members[i].status == "running" and trainer.epoch < trainer.epochs
        ]
        asks = [members[i].request.stop_ask(trainer.members[i].history[-1]) for i in candidates]
        decisions = dict(zip(candidates, ask(stopper, asks), strict=True))
        for i in sorted(open_members):
            if _settle(i, members[i], trainer, tracker, decisions.get(i, False)):
                open_members.discard(i)
                (members[i].dir / MEMBER_CHECKPOINT).unlink(missing_ok=True)
        files = {
            f"{members[i].request.key}.pt": save_member(trainer, i, members[i].dir / MEMBER_CHECKPOINT)
            for i in open_members
        }
        results = {**ended, **{m.request.key: m.result.to_dict() for m in members}}
        report({"epoch": trainer.epoch, "epochs": trainer.epochs, MEMBERS: results}, files)


def _settle(index: int, member: _Member, trainer: PackedTrainer, tracker: RunTracker, stop: bool) -> bool:
    """Close member ``index`` if it finished, diverged or is to stop (MLflow status, model, result); True if closed."""
    state = trainer.members[index]
    latest = state.history[-1] if state.history else {}
    if state.status == "failed":
        message = f"TrainingDiverged: {state.error}"
        tracker.finish(member.run_id, "FAILED", message)
        member.update(latest, ended=True, error=state.error)
        return True
    if state.status == "running" and stop:
        trainer.stop(index)
        tracker.finish(member.run_id, "KILLED")
        member.update(latest, ended=True)
        return True
    if state.status == "finished":
        assert state.result is not None  # a finished member holds its result
        executed = conclude(
            member.spec,
            state.result,
            member.dir,
            lambda metrics, step: tracker.log_metrics(member.run_id, metrics, step=step),
        )
        assert executed.model_path is not None  # conclude saved the model in member.dir
        tracker.log_artifact(member.run_id, executed.model_path)
        tracker.finish(member.run_id, "FINISHED")
        member.update(executed.result.final, ended=True)
        return True
    member.update(latest, ended=False)
    return False
