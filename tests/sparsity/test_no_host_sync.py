"""No value is read back to the host inside an epoch of sparse training on the accelerator path (formulas §10.6).

small_cnn trains on digits through :func:`tuneprune.training.train` under
:func:`accelerator_path` (CPU tensors taking the accelerator's algorithm) in every
combination of scheduler, threshold mode and elimination, the theta policies in turn.
Every ``torch.Tensor`` method that reads a value to the host is wrapped to record its
calls; a hook placed before the Sparsifier opens a new window at each iteration, so the
window of iteration k holds every read from its ``before_iteration`` to the next one: the
sparse engine's hooks, forward, backward, gradient clipping, optimizer and LR steps and
the loader's next batch. Those windows must be empty. The last window of an epoch also
holds the epoch-end reads (the loss check, the metrics), which are allowed and show that
the recording works. On a CUDA machine the same run is also checked by CUDA's own
synchronisation detector. A pack of trials (:class:`~tuneprune.training.PackedTrainer`)
is checked the same way, its windows opened by the pack's ``before_iteration``.
"""

from __future__ import annotations

import contextlib
import itertools
import traceback
import warnings
from typing import Any

import pytest
import torch

from tests.sparsity.test_equivalence import DROPS
from tuneprune.data import load_dataset
from tuneprune.sparsity import AdaptiveScheduler
from tuneprune.sparsity.dispatch import accelerator_path
from tuneprune.sparsity.drop import Elimination
from tuneprune.sparsity.masks import MaskBuilder, MemberRule
from tuneprune.sparsity.theta import ConstantTheta, LogDensityTheta
from tuneprune.training import PackedTrainer, RunConfig, train

READERS = (
    "item",
    "tolist",
    "numpy",
    "cpu",
    "__float__",
    "__int__",
    "__index__",
    "__bool__",
    "__complex__",
    "__array__",
    "__format__",
    "__repr__",
)
SCHEDULERS = {
    "cubic": {"type": "cubic", "end_fraction": 0.5},
    "adaptive": {"type": "adaptive", "preset": "lambda1", "initial_sparsity": 0.5, "warmup_epochs": 0.5},
}
THETAS = {
    "feather": {"policy": "feather"},
    "constant": {"policy": "constant", "value": 0.5},
    "logdensity-layer": {"policy": "log_density", "mode": "layer", "alpha": 0.1},
    "logdensity-global": {"policy": "log_density", "mode": "global", "alpha": 0.1, "theta_min": 0.05},
}
COMBINATIONS = [
    case
    for case in itertools.product(SCHEDULERS, ["global", "layer"], DROPS)
    if not (case[1] == "layer" and case[2].startswith("global"))  # refused (formulas §4)
]
CASES = [(*case, theta) for case, theta in zip(COMBINATIONS, itertools.cycle(THETAS))]  # each theta policy in turn
EPOCHS, BATCH_SIZE = 2, 512  # 3 iterations per epoch: two full windows each

pytestmark = pytest.mark.usefixtures("single_thread")


class HostReads:
    """Records, while ``recording``, every call of a :data:`READERS` method of ``torch.Tensor`` and where it came from,
    and every tensor made from host values by ``torch.tensor`` / ``torch.as_tensor`` (on an accelerator a copy
    from the host, which waits for the device: CUDA's detector flags it)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.recording = False
        self.calls: list[str] = []
        for name in READERS:
            monkeypatch.setattr(torch.Tensor, name, self._recorded(name, getattr(torch.Tensor, name)))
        for name in ("tensor", "as_tensor"):
            monkeypatch.setattr(torch, name, self._recorded_maker(name, getattr(torch, name)))

    def _recorded_maker(self, name: str, maker: Any) -> Any:
        def made_from_host(data: Any, *args: Any, **kwargs: Any) -> Any:
            if self.recording and not isinstance(data, torch.Tensor):
                caller = traceback.extract_stack(limit=2)[0]
                self.calls.append(f"torch.{name} from {caller.filename}:{caller.lineno} ({caller.name})")
            return maker(data, *args, **kwargs)

        return made_from_host

    def _recorded(self, name: str, method: Any) -> Any:
        def reader(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            if self.recording:
                caller = traceback.extract_stack(limit=2)[0]
                self.calls.append(f"Tensor.{name} from {caller.filename}:{caller.lineno} ({caller.name})")
            return method(tensor, *args, **kwargs)

        return reader


class IterationWindows:
    """A train hook that opens a window of host reads (and CUDA sync warnings) at every iteration."""

    def __init__(self, reads: HostReads, syncs: list[warnings.WarningMessage]) -> None:
        self.reads, self.syncs = reads, syncs
        self.epochs: list[list[list[str]]] = []
        self._opened: tuple[int, int] | None = None

    def _close(self) -> None:
        if self._opened is not None:
            reads, syncs = self._opened
            window = self.reads.calls[reads:] + [f"CUDA sync: {w.message}" for w in self.syncs[syncs:]]
            self.epochs[-1].append(window)
        self._opened = None

    def before_iteration(self) -> None:
        if self._opened is None:
            self.epochs.append([])
        self._close()
        self._opened = (len(self.reads.calls), len(self.syncs))
        self.reads.recording = True

    def after_backward(self) -> None:
        """Nothing: the window runs on to the next iteration."""

    def end_epoch(self) -> None:
        """Close the epoch's last window (it holds the epoch-end reads too) and stop recording."""
        self._close()
        self.reads.recording = False

    def metrics(self) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Nothing to restore."""


@contextlib.contextmanager
def cuda_sync_warnings(device: str):
    """CUDA's synchronisation detector in warning mode, its warnings collected (nothing off CUDA)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if device == "cuda":
            torch.cuda.set_sync_debug_mode("warn")
        try:
            yield caught
        finally:
            if device == "cuda":
                torch.cuda.set_sync_debug_mode("default")


@pytest.fixture(scope="module")
def digits():
    return load_dataset(RunConfig(model="small_cnn", dataset="digits"))


DEVICES = [
    "accelerator-path",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("scheduler", "threshold", "drop", "theta"), CASES, ids=["-".join(case) for case in CASES])
def test_no_host_read_between_iterations(scheduler, threshold, drop, theta, device, digits, monkeypatch):
    sparsity = {
        "target": 0.9,
        "threshold": threshold,
        "theta": THETAS[theta],
        "scheduler": SCHEDULERS[scheduler],
        "drop": DROPS[drop],
    }
    config = RunConfig(
        model="small_cnn",
        dataset="digits",
        epochs=EPOCHS,
        batch_size=BATCH_SIZE,
        device="cpu" if device == "accelerator-path" else "cuda",
        sparsity=sparsity,
    )
    reads = HostReads(monkeypatch)
    path = accelerator_path() if device == "accelerator-path" else contextlib.nullcontext()
    with path, cuda_sync_warnings(device) as syncs:
        windows = IterationWindows(reads, syncs)
        result = train(config, data=digits, hooks=[windows])

    assert [len(epoch) for epoch in windows.epochs] == [3] * EPOCHS
    for epoch in windows.epochs:
        for window in epoch[:-1]:
            assert window == []
        assert any("_drop_diverged" in call for call in epoch[-1])  # the epoch-end reads are seen
    assert result.final["sparsity"] > 0.5
    if DROPS[drop]:
        assert result.final["eliminated"] > 0  # the elimination ran, and applied by the end


def test_adaptive_update_on_tensors_reads_nothing_and_follows_the_float_one(monkeypatch):
    """formulas §3 as tensor operations (accelerator path) against the float update, and the checkpoint of the former."""
    stabilities = [torch.tensor(mu) for mu in (0.90, 0.95, 0.95, 0.93, 0.97, 0.97, 0.96, 0.99, 0.80, 0.85, 0.999, 0.5)]
    on_floats, on_tensors, restored = (
        AdaptiveScheduler(0.5, 0.8, 20, -0.01, final_sparsity=0.95, epochs=20, initial_sparsity=0.5) for _ in range(3)
    )
    expected = [on_floats.step(float(mu)) for mu in stabilities]
    reads = HostReads(monkeypatch)
    with accelerator_path():
        reads.recording = True
        got = [on_tensors.step(mu) for mu in stabilities]
        reads.recording = False
    assert reads.calls == []
    assert all(isinstance(s, torch.Tensor) and s.dtype == torch.float64 for s in got[1:])
    assert [float(s) for s in got] == pytest.approx(expected, rel=1e-14, abs=0)
    assert expected[-1] == 0.95  # it rose, plateaued and reached the target
    assert len(set(expected)) > 3

    restored.load_state_dict(on_tensors.state_dict())
    assert (restored.sparsity, restored.previous_mu) == (float(got[-1]), float(stabilities[-1]))
    with accelerator_path():
        assert [float(restored.step(mu)) for mu in stabilities[:3]] == [
            float(on_tensors.step(mu)) for mu in stabilities[:3]
        ]


# Members of a pack: cubic and adaptive schedules, global and layer thresholds, rho 0 and > 0
# (applying from the start and after the target), every theta policy, their own lr, momentum,
# decay and clipping, and a dense member.
PACK: list[dict[str, Any] | None] = [
    {"scheduler": "cubic", "threshold": "global", "drop": "global-after", "theta": "feather"},
    {
        "scheduler": "adaptive",
        "threshold": "layer",
        "drop": "layer-start",
        "theta": "logdensity-layer",
        "lr": 0.05,
        "grad_clip": None,
    },
    {
        "scheduler": "adaptive",
        "threshold": "global",
        "drop": "global-start",
        "theta": "logdensity-global",
        "momentum": 0.8,
        "weight_decay": 1e-3,
    },
    {"scheduler": "cubic", "threshold": "layer", "drop": "off", "theta": "constant", "grad_clip": 1.0},
    None,
]


def _member(k: int, member: dict | None, device: str) -> RunConfig:
    base = {"model": "small_cnn", "dataset": "digits", "epochs": EPOCHS, "batch_size": BATCH_SIZE}
    base.update(seed=k, device=device)
    if member is None:
        return RunConfig(**base)
    sparse = {"scheduler", "threshold", "drop", "theta"}
    sparsity = {
        "target": 0.9,
        "threshold": member["threshold"],
        "theta": THETAS[member["theta"]],
        "scheduler": SCHEDULERS[member["scheduler"]],
        "drop": DROPS[member["drop"]],
    }
    return RunConfig(**base, **{key: v for key, v in member.items() if key not in sparse}, sparsity=sparsity)


@pytest.mark.parametrize("device", DEVICES)
def test_no_host_read_between_iterations_of_a_pack(device, monkeypatch):
    configs = [_member(k, member, "cpu" if device == "accelerator-path" else "cuda") for k, member in enumerate(PACK)]
    reads = HostReads(monkeypatch)
    path = accelerator_path() if device == "accelerator-path" else contextlib.nullcontext()
    with path, cuda_sync_warnings(device) as syncs:
        trainer = PackedTrainer(configs)
        adaptive = [s for s in trainer.sparsity.schedules if s is not None and hasattr(s, "scheduler")]
        windows = IterationWindows(reads, syncs)
        before_iteration = trainer.sparsity.before_iteration

        def opening_a_window(step: int, weights: torch.Tensor) -> None:
            windows.before_iteration()
            before_iteration(step, weights)

        monkeypatch.setattr(trainer.sparsity, "before_iteration", opening_a_window)
        for _ in range(EPOCHS):
            trainer.train_epoch()
            windows.end_epoch()

    assert [len(epoch) for epoch in windows.epochs] == [3] * EPOCHS
    for epoch in windows.epochs:
        for window in epoch[:-1]:
            assert window == []
        assert any("_drop_diverged" in call for call in epoch[-1])  # the epoch-end reads are seen
    assert [m.status for m in trainer.members] == ["finished"] * len(PACK)
    assert len(adaptive) == 2
    assert all(isinstance(s.scheduler.sparsity, torch.Tensor) for s in adaptive)  # S_k on the device
    for member, spec in zip(trainer.members, PACK, strict=True):
        final = member.history[-1]
        if spec is None:
            assert "sparsity" not in final
            continue
        assert final["sparsity"] > 0.5
        assert (final["eliminated"] > 0) == (spec["drop"] != "off")  # the elimination ran, and applied by the end


def test_packed_masks_at_device_sparsities_read_nothing_and_equal_those_at_floats(monkeypatch):
    """The builder takes S_k as floats, 0-dim tensors or one [K] tensor: the same masks, and on the accelerator path no read."""
    g = torch.Generator().manual_seed(3)
    sizes = [40, 3, 150]
    weights = torch.randn(5, sum(sizes), generator=g)
    rules = [
        MemberRule("global", ConstantTheta(0.5), Elimination(0.5, 0.8, "global", "after_target")),
        MemberRule("layer", LogDensityTheta(0.2, mode="layer"), Elimination(0.3, 0.9, "layer")),
        MemberRule("global", LogDensityTheta(0.1), Elimination(0.4, 0.7, "global")),
        MemberRule("layer", ConstantTheta(1.0), Elimination(0.0, 0.9)),
        None,
    ]
    floats = [0.8, 0.6, 0.0, 0.9, 0.0]  # member 0 at its target, member 2 not started, member 4 dense
    names = ("active", "thresholds", "kept", "kept_counts", "eliminated", "eliminated_counts")
    reference = MaskBuilder(sizes, rules, torch.device("cpu"))
    expected = reference.build(weights, floats)
    expected_scale = reference.gradient_scale(expected)
    assert expected_scale is not None
    assert expected.eliminated is not None
    assert expected.eliminated[:2].any()
    assert not expected.eliminated[2:].any()
    reads = HostReads(monkeypatch)
    for given in (torch.tensor(floats, dtype=torch.float64), [torch.tensor(s, dtype=torch.float64) for s in floats]):
        assert MaskBuilder(sizes, rules, torch.device("cpu")).build(weights, given).sparsities == floats  # CPU path
        with accelerator_path():
            builder = MaskBuilder(sizes, rules, torch.device("cpu"))
            reads.recording = True
            masks = builder.build(weights, given)
            scale = builder.gradient_scale(masks)
            reads.recording = False
        assert reads.calls == []
        assert all(isinstance(s, torch.Tensor) for s in masks.sparsities)
        for name in names:
            assert torch.equal(getattr(masks, name), getattr(expected, name)), name
        assert torch.equal(masks.layer_thetas(), expected.layer_thetas())
        assert scale is not None
        assert torch.equal(scale, expected_scale)
