"""Why raw channel scores are not comparable across layers (formulas §6; tuneprune.relevance.normalization).

Trains the model of a relevance study config (default configs/relevance_digits.yaml), then
prints per convolution: channels, map size, the layer's total |R| (LRP conserves it), the
mean raw relevance and parameter score per channel, and how many of the layer's channels
the raw and the default-normalised global rankings prune at 10, 20, 30 and 40 %.

    PYTHONPATH=. .venv/bin/python scripts/relevance_layers.py [CONFIG.yaml]
"""

from __future__ import annotations

import sys

import torch

from tuneprune.data import load_dataset
from tuneprune.relevance.channels import conv_units, layer_of_channels, select_channels
from tuneprune.relevance.config import RelevanceStudyConfig
from tuneprune.relevance.lrp import mean_channel_relevance
from tuneprune.relevance.normalization import normalize_scores
from tuneprune.relevance.rankings import ascending
from tuneprune.relevance.scores import layer_scores, relevance_samples
from tuneprune.shared.config import load_config
from tuneprune.training import train

PERCENTAGES = (10, 20, 30, 40)


def main(path: str) -> None:
    config = load_config(RelevanceStudyConfig, path, [])
    settings = config.relevance.model_copy(update={"device": "cpu"})
    model = train(config.train.model_copy(update={"device": "cpu"})).model
    units = conv_units(model)
    maps = mean_channel_relevance(model, units, relevance_samples(load_dataset(config.train), settings), settings)
    relevance = layer_scores(maps, settings.statistic)
    parameter = layer_scores([unit.conv.weight for unit in units], settings.parameter_statistic)
    layer = torch.tensor(layer_of_channels(units))
    orders = {
        "relevance, raw": ascending(relevance),
        f"relevance, {settings.normalize}": ascending(normalize_scores(relevance, units, settings.normalize)),
        "parameter, raw": ascending(parameter),
        f"parameter, {settings.parameter_normalize}": ascending(
            normalize_scores(parameter, units, settings.parameter_normalize)
        ),
    }
    print(f"{'layer':12s} {'channels':>8s} {'map':>5s} {'total |R|':>9s} {'mean R/ch':>10s} {'mean |w|/ch':>11s}")
    for i, (unit, m) in enumerate(zip(units, maps, strict=True)):
        mine = layer == i
        total = float(m.abs().sum())
        size = f"{m.shape[1]}x{m.shape[2]}"
        print(
            f"{unit.name:12s} {unit.size:8d} {size:>5s} {total:9.3f} {relevance[mine].mean():10.3e} {parameter[mine].mean():11.3e}"
        )
    print(
        f"\nchannels pruned per layer by the global ranking (raw: floor of one channel; else min_layer_share = {settings.min_layer_share}):"
    )
    for name, order in orders.items():
        share = 0.0 if name.endswith(", raw") else settings.min_layer_share
        counts = []
        for p in PERCENTAGES:
            chosen = torch.tensor(select_channels(order, units, p, "global", share), dtype=torch.long)
            counts.append(f"{p}%: " + "/".join(str(int((layer[chosen] == i).sum())) for i in range(len(units))))
        print(f"  {name:22s} " + "   ".join(counts))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "configs/relevance_digits.yaml")
