"""The report of an evolution (formulas §5, formulas §8): every individual on the accuracy-sparsity plane, the front, its
hypervolume against deterministic pruning and the dense model, and the chosen point as a prune-stochastic config."""

from __future__ import annotations

import csv
import io
from typing import Any

import numpy as np
import yaml

from tuneprune.evolution.archive import FRONT_PLANE
from tuneprune.evolution.space import EvolutionSpace
from tuneprune.output.commands import tuneprune_command
from tuneprune.output.plotting import integer_x, new_figure
from tuneprune.reports.document import Report
from tuneprune.reports.sections import front_section
from tuneprune.reports.source import Source
from tuneprune.shared.config import validate
from tuneprune.tracking import TAG_KIND, TAG_TRIAL

# The chosen point: the sparsest front point within this much accuracy of the dense model.
ACCURACY_TOLERANCE = 0.01


def population(source: Source, rate_names: list[str]) -> list[dict[str, Any]]:
    """Every successfully evaluated individual, from the population CSV of each generation run."""
    client = source.client
    runs = client.search_runs(
        [client.get_run(source.parent_run_id).info.experiment_id],
        f"tags.`mlflow.parentRunId` = '{source.parent_run_id}' and tags.`{TAG_KIND}` = 'generation'",
    )
    numbers = ("sigma", *rate_names, "accuracy", "sparsity", "pruned_layers_sparsity")
    return [
        {"generation": int(r["generation"]), "index": int(r["index"]), "seed": int(r["seed"]),
         **{k: float(r[k]) for k in numbers if k in r}}
        for run in sorted(runs, key=lambda generation: generation.data.tags[TAG_TRIAL])
        for r in csv.DictReader(io.StringIO(source.artifact_text(run.info.run_id, f"{run.data.tags[TAG_TRIAL]}.csv")))
        if r["status"] == "ok"
    ]  # fmt: skip


def baselines(summary: dict[str, Any]) -> dict[str, np.ndarray]:
    """The dense model's accuracy, and deterministic pruning at the front's rates where it did not fail (formulas §5)."""
    front = summary["front"]
    if not front:
        return {}
    span = [min(r["sparsity"] for r in front), max(r["sparsity"] for r in front)]
    compared = [[r["sparsity"], r["deterministic_accuracy"]] for r in front if r["deterministic_accuracy"] is not None]
    return {
        "dense": np.array([[s, summary["dense"]["val_acc"]] for s in span]),
        "deterministic pruning, same rates": np.array(compared).reshape(-1, 2),
    }


def hypervolume_figure(history: list[float]) -> Any:
    """The archive's hypervolume after each generation, as the evolution logged it."""
    fig, (ax,) = new_figure(height=3.2)
    ax.plot(range(1, len(history) + 1), history, "o-")
    ax.set_xlabel("generation")
    integer_x(ax)
    ax.set_ylabel("hypervolume of the archive")
    return fig


def best_config(report: Report, source: Source, space: EvolutionSpace) -> None:
    """``best.yaml``: a prune-stochastic config of the sparsest front point within 1 point of dense accuracy."""
    summary, front = source.summary, source.summary["front"]
    report.heading("Chosen configuration")
    if not front or summary["rate_names"] != ["rate"]:
        report.text(
            "No single-rate front point: no prune-stochastic config written (per-group rates have no config form).",
            note=True,
        )
        return
    dense = summary["dense"]["val_acc"]
    close = [r for r in front if r["accuracy"] >= dense - ACCURACY_TOLERANCE]
    pick = max(close, key=lambda r: r["sparsity"]) if close else max(front, key=lambda r: r["accuracy"])
    config = {
        "train": space.train.model_dump(mode="json"),
        "sigma": pick["sigma"],
        "rate": pick["rate"],
        "samples": space.samples,
        "seed": pick["seed"],  # the individual's noise seeds: sample j uses derive_seed(seed, j), as it did here
        "target": space.target.model_dump(mode="json"),
    }
    path = report.write_yaml("best.yaml", config)
    rule = (
        f"The sparsest front point within {ACCURACY_TOLERANCE} of the dense accuracy {dense:.4f}"
        if close
        else "The most accurate front point"
    )
    report.text(
        f"{rule}: generation {pick['generation']} individual {pick['index']}, sparsity {pick['sparsity']:.4f}, "
        f"accuracy {pick['accuracy']:.4f}. Run it with: "
        + tuneprune_command("prune-stochastic", path, "--checkpoint", source.results_dir / "dense.pt")
    )


def evolution_report(report: Report, source: Source) -> None:
    """Every section of an evolution report, in order."""
    summary = source.summary
    space = validate(EvolutionSpace, yaml.safe_load(source.artifact_text(source.parent_run_id, "space.yaml")))
    rows = population(source, summary["rate_names"])
    accuracy_ref, sparsity_ref = summary["reference_point"]
    report.text(
        f"{summary['evaluated']} individuals evaluated ({summary['failed']} failed, not drawn) over {len(summary['hypervolume'])} "
        f"generations; accuracy is the median validation accuracy of {space.samples} noisy samples (formulas §5); sparsity is the "
        "whole model's (every prunable weight, the objective), pruned_layers_sparsity that of the layers the rates prune."
    )
    hv = front_section(report, rows, FRONT_PLANE, (sparsity_ref, accuracy_ref), baselines(summary))
    if failed := sum(r["deterministic_accuracy"] is None for r in summary["front"]):
        report.text(
            f"Deterministic pruning failed at {failed} of {len(summary['front'])} front points: not drawn.", note=True
        )
    report.heading("Hypervolume per generation")
    report.figure("hypervolume", hypervolume_figure(summary["hypervolume"]))
    report.table("hypervolume", [hv])
    best_config(report, source, space)
