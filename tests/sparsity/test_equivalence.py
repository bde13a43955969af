"""The flat, batched engine against a straightforward per-layer implementation of formulas §1-§4.

The reference below is written layer by layer from the formulas: T (global or per layer)
by a full sort with linear interpolation, kept = |w| > T, theta per policy, t of the
elimination, ``m`` = 1 / theta / 0, ``w~ = P_T(w)`` and ``g_w = m * dL/dw~``. Over several
SGD iterations the Sparsifier must give the same thresholds, masks, gradients and weights
in every combination of threshold mode, theta policy, scheduler and elimination, on the
CPU path and on the accelerator path (run on CPU tensors).

The engine's one-pass ``P_T`` may round the last bit of a few weights differently from a
per-layer pass (vectorised loops split tensors differently), so each iteration starts the
reference from the engine's current weights: thresholds and masks must then be equal
exactly, gradients and the updated weights to float tolerance.
"""

import contextlib
import copy
import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from tuneprune.sparsity import (
    Sparsifier,
    SparsityConfig,
    build_schedule,
    original_weight,
    prunable_layers,
    threshold_operator,
)
from tuneprune.sparsity.dispatch import accelerator_path, on_numpy
from tuneprune.sparsity.masks import jaccard

STEPS_PER_EPOCH, EPOCHS, ITERATIONS = 3, 2, 5
THETAS = {
    "constant": {"policy": "constant", "value": 0.5},
    "feather": {"policy": "feather"},
    "logdensity-layer": {"policy": "log_density", "mode": "layer", "alpha": 0.1},
    "logdensity-global": {"policy": "log_density", "mode": "global", "alpha": 0.1, "theta_min": 0.05},
}
SCHEDULERS = {
    "cubic": {"type": "cubic"},
    "adaptive": {"type": "adaptive", "preset": "lambda1", "initial_sparsity": 0.5},
    "constant": {"type": "constant"},
}
DROPS = {
    "off": {},
    "global-start": {"rho": 0.5, "mode": "global", "timeframe": "from_start"},
    "global-after": {"rho": 0.5, "mode": "global", "timeframe": "after_target"},
    "layer-start": {"rho": 0.5, "mode": "layer", "timeframe": "from_start"},
    "layer-after": {"rho": 0.5, "mode": "layer", "timeframe": "after_target"},
}
CASES = [
    case
    for case in itertools.product(["global", "layer"], THETAS, SCHEDULERS, DROPS)
    if not (case[0] == "layer" and case[3].startswith("global"))  # refused (formulas §4)
]


pytestmark = pytest.mark.usefixtures("single_thread")


def tiny_model() -> torch.nn.Module:
    """Four prunable layers of 36 to 1,280 weights, with BatchNorm."""
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 40), nn.ReLU(), nn.Linear(40, 10),
    )  # fmt: skip


def sort_quantile(values: torch.Tensor, q: float) -> torch.Tensor:
    """The Feather reference: full sort, linear interpolation at q * (n - 1); 0 for q <= 0."""
    if q <= 0:
        return torch.zeros((), dtype=values.dtype)
    ordered = torch.sort(values.flatten()).values
    position = q * (ordered.numel() - 1)
    lower = min(int(position), ordered.numel() - 1)
    return torch.lerp(ordered[lower], ordered[min(lower + 1, ordered.numel() - 1)], position - lower)


class Reference:
    """formulas §1-§4 layer by layer on a plain copy of the model."""

    def __init__(self, model: torch.nn.Module, config: SparsityConfig) -> None:
        self.model, self.config = model, config
        self.names = [name for name, _ in prunable_layers(model)]
        self.schedule = build_schedule(config, STEPS_PER_EPOCH, EPOCHS)
        self.previous_kept: list[torch.Tensor] | None = None

    def weights(self) -> list[torch.Tensor]:
        modules = dict(self.model.named_modules())
        return [modules[name].weight for name in self.names]

    def masks(self, sparsity: float) -> dict:
        magnitudes = [w.detach().abs() for w in self.weights()]
        if self.config.threshold == "global":
            T = [sort_quantile(torch.cat([m.flatten() for m in magnitudes]), sparsity)] * len(magnitudes)
        else:
            T = [sort_quantile(m, sparsity) for m in magnitudes]
        kept = [m > t for m, t in zip(magnitudes, T, strict=True)]
        densities = [k.sum() / k.numel() for k in kept]
        theta = self.config.theta
        if theta.policy == "constant":
            thetas = [theta.value] * len(kept)
        elif theta.policy == "feather":
            thetas = [1.0 if self.config.target <= 0.95 else 0.5] * len(kept)
        else:
            assert isinstance(theta.alpha, float)  # resolved at config load
            thetas = [
                min(1.0, max(theta.theta_min, 1 + theta.alpha * math.log(d))) if d > 0 else theta.theta_min
                for d in densities
            ]
            if theta.mode == "global":
                thetas = [sum(thetas) / len(thetas)] * len(thetas)
        drop = self.config.drop
        reached = sparsity >= self.config.target - 1e-9
        eliminating = drop.rho > 0 and sparsity > 0 and (drop.timeframe == "from_start" or reached)
        if not eliminating:
            t = [torch.zeros(())] * len(kept)
        elif drop.mode == "global":
            t = [sort_quantile(torch.cat([m.flatten() for m in magnitudes]), drop.rho * sparsity)] * len(kept)
        else:  # rho * S_l, S_l the sparsity the layer reached (a float32 fraction)
            t = [sort_quantile(m, drop.rho * float(1.0 - d)) for m, d in zip(magnitudes, densities, strict=True)]
        eliminated = [m < t_l for m, t_l in zip(magnitudes, t, strict=True)]
        scale = [torch.where(k, 1.0, th).masked_fill(e, 0.0) for k, th, e in zip(kept, thetas, eliminated, strict=True)]
        return {
            "sparsity": sparsity,
            "T": T,
            "kept": kept,
            "eliminated": eliminated if eliminating else None,
            "scale": scale,
        }

    def step(self, step: int, x: torch.Tensor, y: torch.Tensor) -> dict:
        sparsity = float(self.schedule.sparsity_at(step))
        masks = self.masks(sparsity)
        if self.previous_kept is not None:
            mu = torch.tensor(
                [jaccard(a, b) for a, b in zip(masks["kept"], self.previous_kept, strict=True)]
            ).mean()  # float32 mean
            self.schedule.observe(step, mu)  # a tensor, as the engine's: the adaptive update takes the engine's path
        self.previous_kept = masks["kept"]
        weights = self.weights()
        if sparsity > 0:
            tilde = [
                threshold_operator(w.detach(), t, self.config.operator_p).requires_grad_()
                for w, t in zip(weights, masks["T"], strict=True)
            ]
        else:
            tilde = [w.detach().clone().requires_grad_() for w in weights]
        replaced = {f"{name}.weight": w for name, w in zip(self.names, tilde, strict=True)}
        F.cross_entropy(functional_call(self.model, replaced, (x,)), y).backward()
        for w, w_tilde, m in zip(weights, tilde, masks["scale"], strict=True):
            w.grad = w_tilde.grad * m if sparsity > 0 else w_tilde.grad
        return masks


@torch.no_grad()
def copy_state(source: torch.nn.Module, target: torch.nn.Module) -> None:
    """Parameters and buffers of the wrapped ``source`` into the plain ``target``."""
    state = {key.replace("parametrizations.weight.original", "weight"): v for key, v in source.state_dict().items()}
    target.load_state_dict(state)


@pytest.mark.parametrize("path", ["cpu", "accelerator"])
@pytest.mark.parametrize(("threshold", "theta", "scheduler", "drop"), CASES, ids=["-".join(case) for case in CASES])
def test_engine_equals_the_per_layer_reference(threshold, theta, scheduler, drop, path):
    """Both paths: the CPU's NumPy one and the accelerator's (one sort for the thresholds, running-sum counts), run on the CPU."""
    with accelerator_path() if path == "accelerator" else contextlib.nullcontext():
        run_and_compare(threshold, theta, scheduler, drop)


def run_and_compare(threshold: str, theta: str, scheduler: str, drop: str) -> None:
    config = SparsityConfig(
        target=0.9, threshold=threshold, theta=THETAS[theta], scheduler=SCHEDULERS[scheduler], drop=DROPS[drop]
    )
    torch.manual_seed(0)
    model = tiny_model()
    plain = copy.deepcopy(model)
    sparsifier = Sparsifier.from_config(model, config, steps_per_epoch=STEPS_PER_EPOCH, epochs=EPOCHS)
    reference = Reference(plain, config)
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4) for m in (model, plain)]
    g = torch.Generator().manual_seed(1)
    originals = [original_weight(m) for m in sparsifier._modules]
    for step in range(ITERATIONS):
        x, y = torch.randn(16, 1, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g)
        copy_state(model, plain)
        for optimizer in optimizers:
            optimizer.zero_grad()
        sparsifier.before_iteration()
        F.cross_entropy(model(x), y).backward()
        expected = reference.step(step, x, y)
        masks = sparsifier._engine.current  # the engine's masks of the one member, per layer below
        assert masks is not None
        assert masks.sparsities[0] == expected["sparsity"]
        thresholds = masks.thresholds.expand(len(originals))  # one T (global) or one per layer
        kept = sparsifier._layout.shaped(masks.kept[0])
        eliminated = None if masks.eliminated is None else sparsifier._layout.shaped(masks.eliminated[0])
        for i, w in enumerate(reference.weights()):
            assert torch.equal(thresholds[i], expected["T"][i]), (step, i)
            assert torch.equal(kept[i], expected["kept"][i]), (step, i)
            if expected["eliminated"] is None:  # skipped on the CPU path, an empty mask on the accelerator path
                assert eliminated is None or (not on_numpy(masks.kept) and not eliminated[i].any())
            else:
                assert eliminated is not None
                assert torch.equal(eliminated[i], expected["eliminated"][i]), (step, i)
            torch.testing.assert_close(originals[i].grad, w.grad, rtol=1e-4, atol=1e-6)
        for optimizer in optimizers:
            optimizer.step()
        for original, w in zip(originals, reference.weights(), strict=True):
            torch.testing.assert_close(original.detach(), w.detach(), rtol=1e-4, atol=1e-6)
