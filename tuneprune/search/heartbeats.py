"""Per-trial heartbeats: a driver marks the trials it asked and has not yet told as alive (docs/cluster.md).

A RUNNING trial whose latest heartbeat is older than ``GRACE_PERIOD_S`` was left by a driver
that died: a driver sharing the study claims it (:meth:`~tuneprune.search.studies.GridStudy.claim_stale`).
"""

from __future__ import annotations

import threading

import optuna

from tuneprune.output.progress import say

HEARTBEAT_INTERVAL_S = 30  # seconds between two heartbeats of a trial
# A RUNNING trial whose latest heartbeat is older is an orphan of a dead driver. Longer than the 300 s a driver
# waits for an unreachable storage (studies.STORAGE_PATIENCE_S) plus a heartbeat interval: a driver that lives
# through a database outage beats again before another driver can take its trials.
GRACE_PERIOD_S = 360
# User attribute of a RUNNING trial whose driver ended (interrupted, failed) without telling it: not a running
# driver's (studies.drivers_running), though its heartbeats stay fresh for the grace period.
DRIVER_ENDED = "driver_ended"


class Heartbeats:
    """The heartbeats of one driver's trials (by storage trial id), recorded on a daemon thread every interval."""

    def __init__(self, storage: optuna.storages.RDBStorage) -> None:
        self.storage = storage
        self.interval_s = storage.get_heartbeat_interval() or HEARTBEAT_INTERVAL_S
        self._trials: set[int] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def __reduce__(self) -> tuple[type[Heartbeats], tuple[optuna.storages.RDBStorage]]:
        """Tune pickles the searcher, and with it this: the thread, its lock and event stay behind."""
        return Heartbeats, (self.storage,)

    def start(self, trial_id: int) -> None:
        """Record a heartbeat of ``trial_id`` now, then one every ``interval_s`` until :meth:`stop`."""
        self.storage.record_heartbeat(trial_id)
        with self._lock:
            self._trials.add(trial_id)
            if self._thread is None:
                self._stopped.clear()
                self._thread = threading.Thread(target=self._beat, name="tuneprune-heartbeats", daemon=True)
                self._thread.start()

    def stop(self, trial_id: int) -> None:
        """No more heartbeats of ``trial_id`` (its end is told, or about to be)."""
        with self._lock:
            self._trials.discard(trial_id)

    def close(self) -> None:
        """End the thread and mark the trials still RUNNING :data:`DRIVER_ENDED`: they go stale after the grace
        period, for another driver to claim."""
        with self._lock:
            thread, self._thread = self._thread, None
            left, self._trials = sorted(self._trials), set()
        self._stopped.set()
        if thread is not None:
            thread.join()
        for trial_id in left:
            try:
                self.storage.set_trial_user_attr(trial_id, DRIVER_ENDED, True)
            except optuna.exceptions.UpdateFinishedTrialError:
                pass  # claimed by another driver meanwhile
            except Exception as err:  # the storage unreachable: the others take it for a running driver's
                say(f"trial {trial_id} not marked as left by this driver ({type(err).__name__})")

    def _beat(self) -> None:
        while not self._stopped.wait(self.interval_s):
            with self._lock:
                trials = sorted(self._trials)
            try:
                for trial_id in trials:
                    self.storage.record_heartbeat(trial_id)
            except Exception as err:  # a storage restarting: the next round tries again
                say(f"heartbeats not recorded ({type(err).__name__}); trying again in {self.interval_s:g} s")
