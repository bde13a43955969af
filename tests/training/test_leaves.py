"""The stacked model's flat leaves and the packed gradient clipping over them (CIFAR ResNet-20, CPU).

The parameters of K members are three ``[K, M]`` leaves (prunable weights, others with and
without weight decay) whatever the depth, each parameter a view of its segment. Clipping
gives each member the gradients ``torch.nn.utils.clip_grad_norm_`` gives it alone (its
weights parametrized by a Sparsifier when sparse): bit for bit on the CPU path (the solo's
norms, in its order), to 1e-5 relative on the accelerator path (the norms of whole rows of
the leaves summed in another order).
"""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch
import torch.nn as nn

from tuneprune.models import create_model
from tuneprune.shared.config import validate
from tuneprune.sparsity import Sparsifier, SparsityConfig
from tuneprune.sparsity.dispatch import accelerator_path
from tuneprune.sparsity.layers import prunable_layers
from tuneprune.training import RunConfig
from tuneprune.training.optim import PackedSGD, has_weight_decay
from tuneprune.training.stack import StackedModel

CLIPS = (0.5, None, 2.0)  # the first conv and the classifier (< 1000 weights) stay unpruned


def grad_of(p: torch.Tensor) -> torch.Tensor:
    """``p.grad``, set by the test before it is read."""
    assert p.grad is not None
    return p.grad


def stacked(sparse: bool) -> tuple[list[nn.Module], StackedModel]:
    models = []
    for seed in range(len(CLIPS)):
        torch.manual_seed(seed)
        models.append(create_model("resnet20", 10, 3))
    prunable = [f"{name}.weight" for name, _ in prunable_layers(models[0], 1000)] if sparse else []
    return models, StackedModel(models, prunable)


def solo_order(model: nn.Module, sparse: bool, min_size: int = 1000) -> list[str]:
    """The order in which ``clip_grad_norm_`` meets ``model``'s parameters in a solo run (parametrized when sparse)."""
    if not sparse:
        return [name for name, _ in model.named_parameters()]
    model = copy.deepcopy(model)
    Sparsifier.from_config(model, SparsityConfig(target=0.5, min_size=min_size), steps_per_epoch=1, epochs=1)
    return [name.replace(".parametrizations.weight.original", ".weight") for name, _ in model.named_parameters()]


@pytest.mark.parametrize("sparse", [False, True])
def test_clip_order_is_the_solo_runs_parameter_order(sparse):
    models, stack = stacked(sparse)
    assert stack.clip_orders == [solo_order(models[0], sparse)] * len(models)
    assert sorted(stack.clip_orders[0]) == sorted(name for name, _ in models[0].named_parameters())


def test_clip_order_puts_a_parametrized_weight_after_its_bias():
    model = create_model("small_cnn", 10, 1)
    prunable = [f"{name}.weight" for name, _ in prunable_layers(model)]
    order = StackedModel([model, copy.deepcopy(model)], prunable).clip_orders[0]
    assert order == solo_order(model, sparse=True, min_size=0)
    assert order != [name for name, _ in model.named_parameters()]


def test_parameters_are_three_flat_leaves_each_parameter_a_view_of_one():
    models, stack = stacked(sparse=True)
    leaves = stack.parameters()
    assert [leaf.ndim for leaf in leaves] == [2, 2, 2]
    assert stack.decays() == [True, True, False]
    named = stack.member_params(stack.weights)
    assert sorted(named) == sorted(name for name, _ in models[0].named_parameters())
    storages = {leaf.untyped_storage().data_ptr() for leaf in leaves}
    leaf_of = stack.named_leaves([torch.full_like(leaf, i) for i, leaf in enumerate(leaves)])
    for name, tensor in named.items():
        assert tensor.untyped_storage().data_ptr() in storages  # a view, not a copy
        for k, model in enumerate(models):
            assert torch.equal(tensor[k], model.get_parameter(name))
        index = int(leaf_of[name].flatten()[0])
        assert (index == 0) == (name in stack.prunable)
        assert stack.decays()[index] == has_weight_decay(models[0].get_parameter(name))
    rows = [{name: tensor[k] for name, tensor in named.items()} for k in range(len(models))]
    assert all(a is not None and torch.equal(a, b) for a, b in zip(stack.stack_leaves(rows), leaves, strict=True))


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("path", ["cpu", "accelerator"])
def test_each_member_clips_as_clip_grad_norm_alone(sparse, path):
    models, stack = stacked(sparse)
    torch.manual_seed(7)
    for model in models:
        for p in model.parameters():
            p.grad = torch.randn_like(p)
    grads = stack.stack_leaves([{name: grad_of(p) for name, p in m.named_parameters()} for m in models])
    for leaf, grad in zip(stack.parameters(), grads, strict=True):
        leaf.grad = grad
    configs = [validate(RunConfig, {"model": "resnet20", "dataset": "synthetic", "grad_clip": c}) for c in CLIPS]
    optimizer = PackedSGD(configs, stack.decays(), 10, torch.device("cpu"))
    with accelerator_path() if path == "accelerator" else contextlib.nullcontext():
        optimizer.clip(stack.parameters(), *stack.grad_pieces())
    order = solo_order(models[0], sparse)
    for model, clip in zip(models, CLIPS, strict=True):
        if clip is not None:
            alone = [model.get_parameter(name) for name in order]
            assert nn.utils.clip_grad_norm_(alone, clip) > 10 * clip  # the clip is active
    packed = stack.named_leaves([leaf.grad for leaf in stack.parameters()])
    for k, model in enumerate(models):
        for name, p in model.named_parameters():
            if path == "cpu":
                assert torch.equal(packed[name][k], grad_of(p)), name
            else:
                torch.testing.assert_close(packed[name][k], p.grad, rtol=1e-5, atol=0)


class TiedLinear(nn.Module):
    """Two linear maps sharing one weight under two names (``decoder.weight`` is ``encoder.weight``)."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Linear(6, 6)
        self.decoder = nn.Linear(6, 6)
        self.decoder.weight = self.encoder.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(torch.relu(self.encoder(x)))


@pytest.mark.parametrize("forward_mode", ["loop", "vmap"])
def test_a_weight_shared_under_two_names_is_one_stacked_weight_in_both_places(forward_mode):
    """The stack ties what the model ties: its one leaf entry of the shared weight reaches both uses."""
    torch.manual_seed(0)
    models = [TiedLinear(), TiedLinear()]
    stack = StackedModel(models, ["encoder.weight"], forward_mode)
    x = torch.randn(2, 4, 6)
    with torch.no_grad():
        expected = []
        for model, xk in zip(models, x, strict=True):
            twin = copy.deepcopy(model)  # tensors of its own
            twin.encoder.weight.mul_(2.0)  # the twin's decoder shares it
            expected.append(twin(xk))
        stack.leaves[0].mul_(2.0)
        torch.testing.assert_close(stack.forward(stack.weights, x), torch.stack(expected))
