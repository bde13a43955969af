"""A Ray Tune ``Searcher`` asking and telling the Optuna studies of a search (docs/searches.md: why not Ray's own
``OptunaSearch``).

It keeps no state of its own that matters: the RDB studies are the record (one per grid point, each with its
sampler), and trials a dead driver left RUNNING are handed out first, with their key, checkpoint directory and
MLflow run. Every storage call runs, in order, on one thread of its own, off the path from one trial's end to the
next one's start: the next trial is asked ahead while trials train, and ends and checkpoint epochs (the user
attribute ``checkpoint_epoch``, from which a resumed search continues) are told without waiting. A tell that
fails (after its retries) fails the next ask, or :meth:`StudySearcher.close`.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from ray.tune.search import Searcher

from tuneprune.search.protocol import PackRequest, TrialContext, TrialRequest, TrialResult, member_results
from tuneprune.search.space import METRICS, SearchSpace
from tuneprune.search.studies import CHECKPOINT_EPOCH, CONTINUES, ENDED, GridStudy, distributions, retry_unreachable
from tuneprune.search.trainable import drop_checkpoints_before, open_trial_run, resumable_epoch, run_device
from tuneprune.shared.config import ConfigError
from tuneprune.tracking import RunTracker
from tuneprune.training.key import pack_key


def trial_key(grid_index: int, trial: optuna.Trial | FrozenTrial) -> str:
    """A trial's key, its one name everywhere: the ``key`` it carries (a claimed orphan: the key of the trial it
    continues), else ``g<grid index>-<number>``."""
    return str(trial.user_attrs.get("key") or f"g{grid_index}-{trial.number:03d}")


def trial_run_name(key: str, grid_point: dict[str, Any], params: dict[str, Any]) -> str:
    """``g1-007 target=0.95 alpha=0.13 mode=global``: the key, then each value by the last component of its path
    (floats to 4 significant digits). The MLflow run name and the Optuna user attribute ``name``."""
    parts = [
        f"{k.rsplit('.', 1)[-1]}={f'{v:.4g}' if isinstance(v, float) else v}"
        for k, v in {**grid_point, **params}.items()
    ]
    return " ".join([key, *parts])


@dataclass
class _Asked:
    """A trial asked of its study, its request, and the key of the packs it can join (with its resume epoch)."""

    study: GridStudy
    request: TrialRequest
    pack_key: tuple[Any, ...]
    told: bool = False


class StudySearcher(Searcher):
    """Suggest trial configs from the grid-point studies until each has its budget.

    Each suggestion is a :class:`PackRequest` of up to ``resources.pack`` trials whose configs share a pack key
    (:func:`~tuneprune.training.pack_key`, plus the resume epoch); a trial that fits no open pack waits for the
    next one. A member is told to its study as soon as its pack reports it ended.
    """

    def __init__(
        self,
        space: SearchSpace,
        studies: list[GridStudy],
        context: TrialContext,
        on_refused: Callable[[], None] | None = None,
    ) -> None:
        """``on_refused()`` is called for each trial the run config refuses (failed, never handed out)."""
        super().__init__(metric=None, mode=None)
        self.on_refused = on_refused
        self.space = space
        self.studies = studies
        self.context = context
        self.pack = space.resources.pack
        self.distributions = distributions(space)
        self.live: dict[str, list[_Asked]] = {}
        self.waiting: list[_Asked] = []
        self._next = 0
        self._storage_thread: ThreadPoolExecutor | None = None  # made on first use: Tune pickles its searcher
        self._asked_ahead: Future | None = None
        self._telling: list[Future] = []

    def __getstate__(self) -> dict[str, Any]:
        """Tune pickles the searcher before the search starts; its thread and futures stay behind."""
        return {**self.__dict__, "_storage_thread": None, "_asked_ahead": None, "_telling": []}

    def _tracker(self) -> RunTracker:
        """The MLflow tracker of this process for the search's store (``RunTracker.shared``: never pickled)."""
        return RunTracker.shared(self.context.tracking_uri, self.context.experiment)

    def _in_order(self, operation: Callable[[], Any], what: str, retry: Callable[[], Any] | None = None) -> Future:
        """``operation()`` on the searcher's storage thread, after every call submitted before it, run again
        (``retry()`` when given) while the storage is unreachable (:func:`retry_unreachable`)."""
        if self._storage_thread is None:
            self._storage_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tuneprune-studies")
        return self._storage_thread.submit(retry_unreachable, operation, what, retry=retry)

    def _raise_failed_tells(self) -> None:
        """The error of a tell that failed on the storage thread, raised here."""
        ended = [f for f in self._telling if f.done()]
        self._telling = [f for f in self._telling if f not in ended]  # not done() again: one may end in between
        for future in ended:
            future.result()

    def close(self) -> None:
        """End the storage thread, then the heartbeats (an ask in flight starts some), whose trials still RUNNING are
        marked as left by their driver (:meth:`~tuneprune.search.heartbeats.Heartbeats.close`)."""
        try:
            if self._storage_thread is not None:
                self._end_storage_thread()
        finally:
            for gs in self.studies:
                if gs.heartbeats is not None:
                    gs.heartbeats.close()

    def _end_storage_thread(self) -> None:
        """Wait for every tell (raising the first that failed) and end the storage thread. A trial asked and not ended
        stays RUNNING, for a resumed search to run; its MLflow run ends KILLED until then."""
        assert self._storage_thread is not None
        try:
            for future in self._telling:
                future.result()
        finally:
            unended = [*self.waiting, *(a for members in self.live.values() for a in members if not a.told)]
            ahead = self._asked_ahead
            if ahead is not None and ahead.exception() is None and ahead.result() is not None:
                unended.append(ahead.result())
            for asked in unended:
                TrialResult(mlflow_run_id=asked.request.mlflow_run_id).end_run(self._tracker())  # KILLED
            self._telling, self._asked_ahead, self.waiting = [], None, []
            self._storage_thread.shutdown(wait=True)
            self._storage_thread = None

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True

    def save(self, checkpoint_path: str) -> None:
        """Nothing to save: the studies' RDB storage is the searcher's state."""

    def restore(self, checkpoint_path: str) -> None:
        """Nothing to restore: see :meth:`save`."""

    def _ask(self) -> _Asked | None:
        """The next trial, asked ahead while the trials trained; the one after it is asked ahead now. None when every
        study has its budget, asked now (a shared study may have queued a dead driver's trial since)."""
        self._raise_failed_tells()
        ahead, self._asked_ahead = self._asked_ahead, None
        asked = ahead.result() if ahead is not None else None
        if asked is None:
            asked = self._ask_ahead().result()
        self._asked_ahead = self._ask_ahead() if asked is not None else None
        return asked

    def _ask_ahead(self) -> Future[_Asked | None]:
        """The next trial on the storage thread, asked again while the storage is unreachable, handing out one the
        lost connection cut short as an orphan."""

        def adopting() -> _Asked | None:
            for gs in self.studies:
                gs.adopt_cut_short()
            return self._ask_once()

        return self._in_order(self._ask_once, "asking for a trial", adopting)

    def _ask_once(self) -> _Asked | None:
        """The next trial, grid points in turn (orphans first); None when every study has its budget."""
        while (gs := self._next_study()) is not None:
            trial = gs.ask(self.distributions)
            try:
                return self._hand_out(gs, trial)
            except optuna.exceptions.UpdateFinishedTrialError:
                # claimed before it was named, by a driver sharing the study that lost its connection in that
                # instant (GridStudy.adopt_cut_short): queued again, it is asked anew
                gs.release(trial.number)
            except ConfigError as err:
                # values accepted one by one (load_space) that the run config refuses together: this trial fails
                # (told, so a resumed search does not draw it again), not the search
                key = trial_key(gs.index, trial)
                attrs = {"key": key, "name": trial_run_name(key, gs.grid_point, trial.params), "metrics": {}}
                gs.set_user_attrs(trial.number, {**attrs, "error": f"ConfigError: {err}"})
                gs.tell(trial.number, state=TrialState.FAIL)
                if self.on_refused is not None:
                    self.on_refused()
        return None

    def _next_study(self) -> GridStudy | None:
        """The study of the next grid point in turn with trials left to hand out; None when every one has its budget."""
        for offset in range(len(self.studies)):
            place = (self._next + offset) % len(self.studies)  # in the list: a grid index may be past its end
            if (gs := self.studies[place]).remaining > 0:
                self._next = (place + 1) % len(self.studies)
                return gs
        return None

    def _hand_out(self, gs: GridStudy, trial: optuna.Trial) -> _Asked:
        """The request of ``trial``, just asked of ``gs``: its key written, its MLflow run opened, then its run id
        and name written, last."""
        number, orphan = trial.number, CONTINUES in trial.user_attrs
        params = {k: trial.params[k] for k in self.distributions}
        run_config = self.space.resolve(gs.grid_point, params)
        key = trial_key(gs.index, trial)
        # an orphan that ended before its driver died and told its study has no checkpoint left
        resume_epoch = resumable_epoch(self.context.trial_dir(key), int(trial.user_attrs.get(CHECKPOINT_EPOCH, 0)))
        run_name = trial_run_name(key, gs.grid_point, params)
        spec = run_config.model_dump(mode="json")
        spec["device"] = run_device(run_config.device, self.space.resources.gpu)
        if run_config.data_dir is not None:  # checked from here: the trial reads it in the directory Ray runs it in
            spec["data_dir"] = str(run_config.data_dir.absolute())
        request = TrialRequest(key, number, run_name, gs.grid_point, params, spec, self.context)
        if "key" not in trial.user_attrs:  # the key before the MLflow run: a claimed orphan carries it on
            gs.set_user_attrs(number, {"key": key})  # (an orphan cut short before its key gets one now)
        run_id = open_trial_run(self._tracker(), request, new=not orphan)
        # the config it runs (the summary's: a resumed search may change the machine fields); the name last: a trial
        # handed out has one
        gs.set_user_attrs(number, {"config": spec, "mlflow_run_id": run_id, "name": run_name})
        request = replace(request, mlflow_run_id=run_id, resume_epoch=resume_epoch)
        return _Asked(gs, request, (*pack_key(run_config), resume_epoch))

    def _next_pack(self) -> list[_Asked]:
        """Up to ``pack`` trials sharing the pack key of the longest-waiting trial."""
        while True:
            head = [a for a in self.waiting if a.pack_key == self.waiting[0].pack_key] if self.waiting else []
            if len(head) >= self.pack:
                break
            asked = self._ask()
            if asked is None:
                break
            self.waiting.append(asked)
        members = head[: self.pack]
        self.waiting = [a for a in self.waiting if all(a is not m for m in members)]
        return members

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        members = self._next_pack()
        if not members:
            # Ray annotates Searcher.suggest -> Optional[Dict] but documents returning Searcher.FINISHED (a str)
            return Searcher.FINISHED if not self.live else None  # type: ignore[return-value]
        self.live[trial_id] = members
        return PackRequest([m.request for m in members], self.context).to_dict()

    def _tell(self, asked: _Asked, reported: TrialResult, error: bool) -> None:
        """Tell a trial's study how it ended, on the storage thread, without waiting; again while the storage is
        unreachable, unless the tell reached the database before the connection was lost."""
        asked.told = True

        def unless_told() -> None:
            ended = asked.study.study.get_trials(deepcopy=False, states=ENDED)
            if all(t.number != asked.request.number for t in ended):
                self._tell_once(asked, reported, error)

        told = partial(self._tell_once, asked, reported, error)
        self._telling.append(self._in_order(told, f"telling trial {asked.request.key}", unless_told))

    def _tell_once(self, asked: _Asked, reported: TrialResult, error: bool) -> None:
        gs, number = asked.study, asked.request.number
        final = {"epoch": reported.epoch, **{m: reported.value(m) for m in METRICS}}
        attrs: dict[str, Any] = {"metrics": {k: v for k, v in final.items() if v is not None}}
        values = [reported.value(m) for m in self.space.objectives]
        known = [v for v in values if v is not None]
        outcome = "failed" if error else reported.outcome()
        if outcome == "failed":
            attrs["error"] = "worker error" if reported.error is None else str(reported.error)
        gs.set_user_attrs(number, attrs)
        if outcome == "failed":
            gs.tell(number, state=TrialState.FAIL)
        elif outcome == "killed" or len(known) < len(values):
            gs.tell(number, state=TrialState.PRUNED)
        else:
            gs.tell(number, known if len(known) > 1 else known[0])

    def _record_checkpoint(self, asked: _Asked, epoch: int) -> None:
        """Record the epoch of a running trial's latest checkpoint in its study, then delete its older ones."""
        asked.study.set_user_attrs(asked.request.number, {CHECKPOINT_EPOCH: epoch})
        drop_checkpoints_before(self.context.trial_dir(asked.request.key), epoch)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """Tell the members a pack reports ended, and record the checkpoints of the others, which train on."""
        reported = member_results(result)
        for asked in self.live.get(trial_id, []):
            member = reported.get(asked.request.key)
            if asked.told or member is None:
                continue
            if member.ended:
                self._tell(asked, member, error=False)
            elif member.epoch:
                what = f"recording the checkpoint of trial {asked.request.key}"
                self._telling.append(self._in_order(partial(self._record_checkpoint, asked, member.epoch), what))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id not in self.live:
            return
        reported = member_results(result)
        for asked in self.live.pop(trial_id):
            if not asked.told:
                self._tell(asked, reported.get(asked.request.key, TrialResult()), error)
