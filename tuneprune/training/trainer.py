"""The packed trainer: K trials of one search trained together in one process on one device.

Each member trains exactly the trial :func:`tuneprune.training.train` would train alone (a
run is a pack of one): its own initial weights (seeded as alone), data order and
augmentation, BatchNorm statistics, SGD state, learning-rate schedule, gradient clipping
(its own norm), sparsity state (formulas §1-4) and hooks. A member whose loss turns NaN or
infinite fails alone; a pack of any composition built with ``resume=`` goes on from
members' states (:meth:`PackedTrainer.member_state`) exactly as if never stopped.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from tuneprune.data import DatasetSplits, TensorLoader, load_dataset
from tuneprune.models import create_model
from tuneprune.shared.config import ConfigError
from tuneprune.sparsity.dispatch import numpy_device, single_threaded
from tuneprune.sparsity.layers import pruned_layers
from tuneprune.sparsity.members import MemberSparsity
from tuneprune.sparsity.rows import take_members
from tuneprune.sparsity.ste import FlatThreshold
from tuneprune.training.checkpoint import MemberState, check_resume
from tuneprune.training.config import RunConfig
from tuneprune.training.evaluate import evaluate_stacked
from tuneprune.training.hooks import TrainHook
from tuneprune.training.host_memory import keep_freed_memory
from tuneprune.training.key import check_packable
from tuneprune.training.optim import PackedSGD
from tuneprune.training.stack import StackedModel, join_members

MemberCallback = Callable[[int, dict[str, float]], None]


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass
class TrainResult:
    """A finished run: the plain (finalized) model and the per-epoch metric history."""

    model: nn.Module
    config: RunConfig
    num_classes: int
    in_channels: int
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def final(self) -> dict[str, float]:
        return self.history[-1] if self.history else {}


def resolve_device(name: str, field: str = "device") -> torch.device:
    """The device of ``device: auto | cpu | cuda``; ``cuda`` without CUDA is bad input (:class:`ConfigError` naming
    ``field``, e.g. ``relevance.device``)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{field} = 'cuda': CUDA is not available on this machine, allowed here: auto, cpu")
    return torch.device(name)


def member_losses(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Each member's mean cross-entropy ``[K]`` of its ``[K, B, classes]`` logits against its labels ``[K, B]``: on the
    CPU each as alone (bit for bit), on an accelerator as one loss over all members' samples reduced per member (a
    fixed number of kernels whatever K; the sums' rounding may differ in the last bit)."""
    if len(logits) == 1 or numpy_device(logits.device):
        return join_members([F.cross_entropy(logits[k], y[k]) for k in range(len(logits))])
    samples = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")
    return samples.view(y.shape).mean(dim=1)


@dataclass
class MemberResult:
    """One member of a pack: ``status`` running, finished, failed (diverged) or stopped."""

    config: RunConfig
    status: str = "running"
    history: list[dict[str, float]] = field(default_factory=list)
    error: str | None = None
    result: TrainResult | None = None


def _load_member_data(configs: Sequence[RunConfig], device: torch.device) -> list[DatasetSplits]:
    """Each member's splits (they depend on its seed), loaded once per distinct seed."""
    by_seed = {seed: load_dataset(config).to(device) for seed, config in {c.seed: c for c in configs}.items()}
    return [by_seed[config.seed] for config in configs]


def leaves_one(n: int, batch_size: int) -> bool:
    """Whether ``n`` training images in batches of ``batch_size`` give a batch of one image."""
    return n % batch_size == 1 or batch_size == 1


def check_last_batch(model: nn.Module, config: RunConfig, n: int, image: torch.Tensor) -> None:
    """A last batch of one image (:func:`leaves_one` of the ``n`` training images) that the model cannot train on
    (BatchNorm over a single value per channel; tried on ``image``, a batch of one training image, or of zeros of its
    shape) is a one-line :class:`ConfigError` before training, not a crash after an epoch."""
    b = config.batch_size
    if not leaves_one(n, b) or trains_on_one(model, image):
        return
    cannot = f"{config.model}'s BatchNorm cannot train on one image"
    if b == 1:
        raise ConfigError(f"batch_size = 1: {cannot}; allowed: >= 2")
    raise ConfigError(
        f"batch_size = {b}: the last batch of each epoch holds 1 of the {n} training images and {cannot}; "
        f"allowed: a batch_size that leaves 0 or at least 2 ({n} mod batch_size != 1)"
    )


def trains_on_one(model: nn.Module, image: torch.Tensor) -> bool:
    """Whether ``model`` in training mode takes a batch of one ``image`` (BatchNorm cannot: one value per channel)."""
    try:
        copy.deepcopy(model).train()(image)
    except ValueError as err:
        if "Expected more than 1 value per channel" not in str(err):
            raise
        return False
    return True


class PackedTrainer:
    """Trains ``configs`` (see :func:`~tuneprune.training.key.check_packable`) together, one epoch per call.

    ``forward_mode`` is ``vmap`` (fused kernels) or ``loop`` (one forward per member);
    by default ``vmap`` for several members on CUDA and ``loop`` on the CPU, where grouped
    convolutions are slower than separate ones (``scripts/bench_pack.py``), and for one
    member (a search's plain trial, a ``train`` run), whose forward is then its model's own.

    ``models`` (one per member, default: each config's registry model seeded as alone) are
    the members' architectures and initial weights; each ends with its member's final
    weights. ``data`` (one per member, default: each config's dataset). ``hooks`` (one
    sequence per member, :class:`~tuneprune.training.hooks.TrainHook`) are called as the
    protocol says, on the member's model: its modules' modes are the forward's, and after
    the backward pass its parameters' ``.grad`` are views of the member's gradients, so a
    hook's change to them is the member's. Hooks need the ``loop`` forward (under ``vmap``
    all members run member 0's modules).
    """

    def __init__(
        self,
        configs: Sequence[RunConfig],
        forward_mode: str | None = None,
        resume: Sequence[MemberState | None] | None = None,
        *,
        models: Sequence[nn.Module] | None = None,
        data: Sequence[DatasetSplits] | None = None,
        hooks: Sequence[Sequence[TrainHook]] | None = None,
    ) -> None:
        check_packable(configs)
        states = check_resume(configs, resume)
        for name, given in (("models", models), ("data", data), ("hooks", hooks)):
            if given is not None and len(given) != len(configs):
                raise ValueError(f"{name} has {len(given)} entries for {len(configs)} members")
        self.hooks = [list(member_hooks) for member_hooks in hooks] if hooks is not None else [[] for _ in configs]
        hooked = any(self.hooks)
        if hooked and forward_mode == "vmap":
            raise ValueError("forward_mode = 'vmap' runs member 0's modules for all members: hooks need 'loop'")
        first = configs[0]
        if first.num_threads:
            torch.set_num_threads(first.num_threads)
        self.device = resolve_device(first.device)
        if self.device.type == "cpu":  # each step reuses the memory the last one freed
            keep_freed_memory()
        self.members = [MemberResult(config) for config in configs]
        self.rows = list(range(len(configs)))  # member index of each stacked row
        self.data = (
            [splits.to(self.device) for splits in data] if data is not None else _load_member_data(configs, self.device)
        )
        sizes = sorted({tuple(len(getattr(d, f"x_{split}")) for split in ("train", "val", "test")) for d in self.data})
        if len(sizes) > 1:  # one number of steps per epoch, and evaluation batches that stack
            raise ValueError(f"data: the members' (train, val, test) splits must be of one size, got {sizes}")
        self.models = []
        for k, (config, splits) in enumerate(zip(configs, self.data, strict=True)):
            torch.manual_seed(config.seed)
            model = (
                models[k] if models is not None else create_model(config.model, splits.num_classes, splits.in_channels)
            )
            model.to(self.device)
            if config.channels_last:  # the model, and each batch in the forward
                model.to(memory_format=torch.channels_last)
            # the registry's model on the loaded data is one architecture on one data shape for all members: one check
            if k == 0 or models is not None or data is not None:
                check_last_batch(model, config, len(splits.x_train), splits.x_train[:1])
            if states is not None:
                model.load_state_dict(states[k]["model"])
            self.models.append(model)
        sparse = [c.sparsity for c in configs if c.sparsity is not None]
        prunable = [f"{name}.weight" for name, _ in pruned_layers(self.models[0], sparse[0].min_size)] if sparse else []
        mode = forward_mode or ("vmap" if self.device.type == "cuda" and len(configs) > 1 and not hooked else "loop")
        memory_format = torch.channels_last if first.channels_last else torch.contiguous_format
        self.stack = StackedModel(self.models, prunable, mode, memory_format, [c.sparsity is not None for c in configs])
        self.steps_per_epoch = math.ceil(len(self.data[0].x_train) / first.batch_size)
        self.epochs = first.epochs
        self.p = sparse[0].operator_p if sparse else 1.0
        self._ste: FlatThreshold | None = None
        self.sparsity = MemberSparsity.from_configs(
            [c.sparsity for c in configs], self.stack.sizes, self.steps_per_epoch, self.epochs, self.device
        )
        self.autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=first.precision == "bf16")
        self.optimizer = PackedSGD(configs, self.stack.decays(), self.steps_per_epoch * self.epochs, self.device)
        self.loaders = [
            TensorLoader(
                d.x_train,
                d.y_train,
                c.batch_size,
                shuffle=True,
                seed=c.seed,
                augment=c.augment if c.augment is not None else c.dataset.startswith("cifar"),
                pad_value=d.pad_value,
            )
            for c, d in zip(configs, self.data, strict=True)
        ]
        self.epoch = 0
        if states is not None:
            self._resume(states)

    def _resume(self, states: Sequence[MemberState]) -> None:
        """Go on from the members' states (weights already loaded into the stacked model)."""
        self.epoch = int(states[0]["epoch"])
        for member, member_hooks, state in zip(self.members, self.hooks, states, strict=True):
            member.history = [dict(metrics) for metrics in state["history"]]
            for hook, hook_state in zip(member_hooks, state.get("hooks", []), strict=False):
                hook.load_state_dict(hook_state)
        self.optimizer.momentum_buffers = self.stack.stack_leaves([state["momentum"] for state in states])
        if self.stack.weights is not None:
            with single_threaded(self.device):
                self.sparsity.restore([state["sparsity"] for state in states], self.stack.weights)
        if self.epoch == self.epochs:
            self._finish(range(len(self.rows)), "finished")

    def member_state(self, member_index: int) -> MemberState:
        """Everything running member ``member_index`` needs to go on from the end of the last epoch (the keys of
        :data:`~tuneprune.training.checkpoint.RUN_STATE_FORMAT` but ``torch_rng``); valid between epochs and in
        its epoch's callback."""
        member = self.members[member_index]
        position = self._position(member_index, "has a state to resume")
        momentum = self.stack.named_leaves(self.optimizer.momentum_buffers)
        return {
            "config": member.config.model_dump(mode="json"),
            "epoch": self.epoch,
            "history": [dict(metrics) for metrics in member.history],
            "model": {name: t.cpu() for name, t in self.stack.member_state(position, self.stack.weights).items()},
            "momentum": {name: t[position].detach().cpu().clone() for name, t in momentum.items()},
            "sparsity": self.sparsity.member_state(position),
            "hooks": [hook.state_dict() for hook in self.hooks[member_index]],
        }

    def _position(self, member_index: int, what: str) -> int:
        """The stacked row of running member ``member_index``; ``ValueError`` naming its status if it is not running."""
        if member_index not in self.rows:
            status = (
                self.members[member_index].status
                if 0 <= member_index < len(self.members)
                else f"not one of the {len(self.members)} members"
            )
            raise ValueError(f"member {member_index} is {status}: only a running member {what}")
        return self.rows.index(member_index)

    def _keep(self, positions: Sequence[int]) -> None:
        """Go on with the stacked rows at ``positions`` only."""
        self.rows = take_members(self.rows, positions)
        self.data = take_members(self.data, positions)
        self.loaders = take_members(self.loaders, positions)
        self.stack.keep(positions)
        self.sparsity.keep(positions)
        self.optimizer.keep(positions)

    def _forward_weights(self) -> torch.Tensor | None:
        """``P_T`` of the ``[K, N]`` weights with the scaled straight-through gradient (formulas §1.2, §1.3),
        the weights themselves before any masks."""
        weights, masks = self.stack.weights, self.sparsity.current
        if weights is None or masks is None:
            return weights
        if self._ste is None or self._ste.flat is not weights:  # a new leaf after members were dropped
            self._ste = FlatThreshold(None, weights, [weights], self.p)
        scale = self.sparsity.scale
        self._ste.install(masks, self.sparsity.builder.threshold_per_weight(masks), None if scale is None else [scale])
        return self._ste.piece(0, weights)

    def train_step(
        self, step: int, batches: Sequence[tuple[torch.Tensor, torch.Tensor]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step ``step`` of every running member on its batch ``batches[k]``: each member's loss and
        its correct predictions per sample. Nothing is read back to the host: a member whose loss is not finite trains
        on (its NaNs stay in its own rows) until :meth:`_drop_diverged` fails it at the epoch's end."""
        x, y = (join_members(part) for part in zip(*batches, strict=True))
        for hook in self._running_hooks():
            hook.before_iteration()
        with single_threaded(self.device):
            if self.stack.weights is not None:  # else no prunable weights, nothing sparse
                self.sparsity.before_iteration(step, self.stack.weights)
            weights = self._forward_weights()
        with self.autocast:  # precision: bf16 (formulas §1.6)
            logits = self.stack.forward(weights, x)
            losses = member_losses(logits, y)
        params = self.stack.parameters()
        for p in params:
            p.grad = None
        losses.sum().backward()
        if any(self.hooks):
            self._hooks_after_backward(params)
        with single_threaded(self.device):
            if self.optimizer.clipping:
                self.optimizer.clip(params, *self.stack.grad_pieces())
            self.optimizer.step(params, step)
        return losses.detach(), logits.detach().argmax(-1) == y

    def _running_hooks(self) -> list[TrainHook]:
        """The hooks of the running members, in member order (each member's in its order)."""
        return [hook for member_index in self.rows for hook in self.hooks[member_index]]

    def _hooks_after_backward(self, params: Sequence[torch.Tensor]) -> None:
        """The hooks' ``after_backward``, each hooked member's parameters' ``.grad`` views of its gradients then."""
        grads = self.stack.named_leaves([p.grad for p in params])
        hooked = [(position, self.models[m]) for position, m in enumerate(self.rows) if self.hooks[m]]
        for position, model in hooked:
            for name, p in model.named_parameters():
                p.grad = grads[name][position] if name in grads else None
        for hook in self._running_hooks():
            hook.after_backward()
        for _, model in hooked:
            model.zero_grad(set_to_none=True)

    def _drop_diverged(self, epoch: int, step_losses: torch.Tensor) -> list[int]:
        """Fail the members whose loss was NaN or infinite at a step of ``epoch`` (``step_losses``, ``[steps, K]``, read
        once per epoch), naming the first such step; the positions of the others, which go on."""
        finite_steps = torch.isfinite(step_losses)
        finite = finite_steps.all(dim=0).tolist()
        for k, ok in enumerate(finite):
            if not ok:
                first = int(finite_steps[:, k].int().argmin())
                step = epoch * self.steps_per_epoch + first
                member = self.members[self.rows[k]]
                member.status = "failed"
                member.error = f"training loss became {step_losses[first, k].item()} at epoch {epoch + 1}, step {step}"
        alive = [k for k, ok in enumerate(finite) if ok]
        if not all(finite):
            self._keep(alive)
        return alive

    @torch.no_grad()
    def _evaluate(self, split: str) -> tuple[list[float], list[float]]:
        """Each member's ``(accuracy, mean cross-entropy)`` on its own ``split`` (val or test), in eval mode."""
        xs = [getattr(d, f"x_{split}") for d in self.data]
        ys = [getattr(d, f"y_{split}") for d in self.data]
        batch = self.members[self.rows[0]].config.eval_batch_size
        return evaluate_stacked(self.stack, self._forward_weights(), xs, ys, batch)

    def train_epoch(self, callbacks: Sequence[MemberCallback] = ()) -> dict[int, dict[str, float]]:
        """Train every running member for one epoch; returns (and hands to callbacks) their metrics by member index."""
        epoch = self.epoch
        start = time.perf_counter()
        self.stack.set_training(True)
        for loader in self.loaders:
            loader.set_epoch(epoch)
        step_losses = torch.empty(self.steps_per_epoch, len(self.rows), device=self.device)
        loss_sum = torch.zeros(len(self.rows), device=self.device)
        correct = torch.zeros(len(self.rows), device=self.device)
        for i, batches in enumerate(zip(*self.loaders, strict=True)):
            losses, hits = self.train_step(epoch * self.steps_per_epoch + i, batches)
            step_losses[i] = losses
            loss_sum += losses * hits.shape[1]
            correct += hits.sum(1)
        alive = self._drop_diverged(epoch, step_losses)
        loss_sum, correct = loss_sum[alive], correct[alive]
        self.epoch += 1
        if not self.rows:
            return {}
        hook_metrics: list[dict[str, float]] = [{} for _ in self.rows]
        for member_metrics, member_index in zip(hook_metrics, self.rows, strict=True):
            for hook in self.hooks[member_index]:
                hook.end_epoch()
                member_metrics.update(hook.metrics())
        sparse_metrics: list[dict[str, float]] = [{} for _ in self.rows]
        if self.stack.weights is not None:
            with single_threaded(self.device):
                self.sparsity.end_epoch((epoch + 1) * self.steps_per_epoch, self.stack.weights)
                sparse_metrics = self.sparsity.metrics()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        train_time = time.perf_counter() - start
        n = len(self.data[0].x_train)
        val_acc, val_loss = self._evaluate("val")
        test_acc, test_loss = self._evaluate("test")
        lrs = self.optimizer.lr_at((epoch + 1) * self.steps_per_epoch)
        epoch_time = time.perf_counter() - start
        reports = {}
        for k, member_index in enumerate(self.rows):
            metrics: dict[str, float] = {"epoch": epoch + 1, **hook_metrics[k], **sparse_metrics[k]}
            metrics.update(
                train_time=train_time,
                train_loss=float(loss_sum[k]) / n,
                train_acc=float(correct[k]) / n,
                val_acc=val_acc[k],
                val_loss=val_loss[k],
                test_acc=test_acc[k],
                test_loss=test_loss[k],
                lr=lrs[k],
                epoch_time=epoch_time,
            )
            self.members[member_index].history.append(metrics)
            reports[member_index] = metrics
            for callback in callbacks:
                callback(member_index, metrics)
        if self.epoch == self.epochs:
            self._finish(range(len(self.rows)), "finished")
        return reports

    def _finish(self, positions: Sequence[int], status: str) -> None:
        """End the members at the stacked rows ``positions`` with ``status`` and their models; the others go on."""
        with torch.no_grad():
            weights = self._forward_weights()
        for position in positions:
            member = self.members[self.rows[position]]
            model: nn.Module = self.stack.export(position, weights, self.models[self.rows[position]]).cpu()
            data = self.data[position]
            member.status = status
            member.result = TrainResult(model, member.config, data.num_classes, data.in_channels, member.history)
        self._keep([k for k in range(len(self.rows)) if k not in positions])

    def stop(self, member_index: int) -> None:
        """Take a running member out between epochs (early stopping); it keeps its model and history."""
        self._finish([self._position(member_index, "can be stopped")], "stopped")

    def run(self, callbacks: Sequence[MemberCallback] = ()) -> list[MemberResult]:
        """Train until every member has finished, failed or been stopped."""
        while self.rows and self.epoch < self.epochs:
            self.train_epoch(callbacks)
        return self.members


def train_packed(
    configs: Sequence[RunConfig],
    callbacks: Sequence[MemberCallback] = (),
    forward_mode: str | None = None,
    resume: Sequence[MemberState | None] | None = None,
) -> list[MemberResult]:
    """Train ``configs`` as one pack (from the states ``resume``); one :class:`MemberResult` per config, in order."""
    return PackedTrainer(configs, forward_mode, resume).run(callbacks)
