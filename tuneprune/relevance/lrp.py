"""Layer-wise relevance propagation with zennit (formulas §6): relevance of every convolution channel.

The convolutions use the configured rule (epsilon, gamma or alpha2beta1), linear layers
the epsilon rule, activations and BatchNorm pass relevance on, average pooling and
residual sums use the Norm rule (zennit's ``layer_map_base``); max-pooling passes it to
the maximum (its gradient). BatchNorm is merged into the convolution it follows and
residual additions become hookable sums (the canonizers :class:`ConvBatchNormMerge` and
:class:`ResidualSumCanonizer`).

The explained score is the logit of the predicted class (seed 001, listing 3.4); the
relevance of a convolution channel is the relevance arriving at that convolution's
output, i.e. at the channel after its BatchNorm and activation.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
from zennit.canonizers import AttributeCanonizer, MergeBatchNorm
from zennit.composites import LayerMapComposite, layer_map_base
from zennit.layer import Sum
from zennit.rules import AlphaBeta, Epsilon, Gamma
from zennit.types import Convolution

from tuneprune.models.resnet import ResidualBlock
from tuneprune.relevance.channels import ConvUnit, conv_units
from tuneprune.relevance.settings import RelevanceSettings
from tuneprune.training.evaluate import eval_mode


class ResidualSumCanonizer(AttributeCanonizer):
    """Give every :class:`ResidualBlock` a ``Sum`` module and a forward that uses it.

    zennit's ``ResNetCanonizer`` only knows torchvision's blocks. A plain ``body + shortcut``
    hands the full relevance of the sum to both branches (autograd copies gradients across
    an addition), doubling it. Routed through a :class:`zennit.layer.Sum` module, to which
    the composites apply the Norm rule, each branch receives relevance in proportion to its
    contribution, so relevance is conserved.
    """

    def __init__(self) -> None:
        super().__init__(self._attribute_map)

    @classmethod
    def _attribute_map(cls, name: str, module: torch.nn.Module) -> dict[str, Any] | None:
        if isinstance(module, ResidualBlock):
            return {"forward": cls.forward.__get__(module), "canonizer_sum": Sum()}
        return None

    @staticmethod
    def forward(self: ResidualBlock, x: torch.Tensor) -> torch.Tensor:
        """``relu(body(x) + shortcut(x))`` with the addition as a hookable module."""
        return self.relu(self.get_submodule("canonizer_sum")(torch.stack([self.shortcut(x), self.body(x)], dim=-1)))


class ConvBatchNormMerge(MergeBatchNorm):
    """Merge each BatchNorm into the convolution it directly follows (when widths agree).

    zennit's ``SequentialMergeBatchNorm`` merges any BatchNorm that follows a linear layer in
    module order, also one of a different width (DenseNet's next pre-activation BatchNorm
    after a concatenation), which fails. This one merges exactly the pairs :func:`conv_units`
    finds, the same pairs that pruning zeroes together; other BatchNorms keep the Pass rule.
    """

    def apply(self, root_module: torch.nn.Module) -> list[MergeBatchNorm]:
        instances = []
        for unit in conv_units(root_module):
            if unit.norm is not None:
                instance = self.copy()
                instance.register((unit.conv,), unit.norm)
                instances.append(instance)
        return instances


def build_composite(settings: RelevanceSettings) -> LayerMapComposite:
    """Rules per layer type (the convolutions' is ``settings.rule``) plus the canonizers of the module docstring."""
    rules = {
        "epsilon": Epsilon(epsilon=settings.epsilon),
        "gamma": Gamma(gamma=settings.gamma),
        "alpha2beta1": AlphaBeta(alpha=2.0, beta=1.0),
    }
    layer_map = [
        *layer_map_base(),
        (Convolution, rules[settings.rule]),
        (nn.Linear, Epsilon(epsilon=settings.epsilon)),
    ]
    return LayerMapComposite(layer_map=layer_map, canonizers=[ConvBatchNormMerge(), ResidualSumCanonizer()])


@dataclass
class Explanation:
    """LRP of one batch: the explained scores, the input's relevance, every convolution output's."""

    score: torch.Tensor
    input: torch.Tensor
    channels: list[torch.Tensor]


def _explain(model: nn.Module, x: torch.Tensor, captured: list[torch.Tensor]) -> Explanation:
    x = x.detach().requires_grad_(True)
    captured.clear()
    logits = model(x)
    target = logits.argmax(1, keepdim=True)
    score = logits.gather(1, target)
    initial = torch.zeros_like(logits).scatter(1, target, score).detach()
    relevance = torch.autograd.grad(logits, [x, *captured], grad_outputs=initial)
    return Explanation(score[:, 0].detach(), relevance[0].detach(), [r.detach() for r in relevance[1:]])


def explain_batches(
    model: nn.Module, units: Sequence[ConvUnit], batches: Iterable[torch.Tensor], settings: RelevanceSettings
) -> Iterator[Explanation]:
    """Explain each batch with the composite of ``settings`` registered once for all of them.

    ``model`` is put in eval mode; hooks and canonizers are removed once the iterator is
    exhausted or closed, which leaves the model's parameters as they were.
    """
    captured: list[torch.Tensor] = []
    handles = [unit.conv.register_forward_hook(lambda _m, _i, out: captured.append(out)) for unit in units]
    try:
        with eval_mode(model), build_composite(settings).context(model) as hooked:
            for x in batches:
                yield _explain(hooked, x, captured)
    finally:
        for handle in handles:
            handle.remove()


def running_mean(batches: Iterable[Sequence[torch.Tensor]]) -> list[torch.Tensor]:
    """Mean over samples of per-layer maps (each batch one ``(N, ...)`` tensor per layer), folded in batch by
    batch, each weighing by its ``N`` (seed 001, listing 4.2)."""
    count = 0
    means: list[torch.Tensor] = []
    for batch in batches:
        n = len(batch[0])
        count += n
        if not means:
            means = [torch.zeros_like(values[0]) for values in batch]
        for mean, values in zip(means, batch, strict=True):
            mean += (values.sum(0) - n * mean) / count
    return means


def mean_channel_relevance(
    model: nn.Module, units: Sequence[ConvUnit], x: torch.Tensor, settings: RelevanceSettings
) -> list[torch.Tensor]:
    """The mean relevance map ``(C, H, W)`` of every convolution in ``units`` over the samples ``x``.

    ``x`` and ``model`` must be on the same device; the accumulation stays there.
    """
    batches = (x[i : i + settings.batch_size] for i in range(0, len(x), settings.batch_size))
    return running_mean(explanation.channels for explanation in explain_batches(model, units, batches, settings))
