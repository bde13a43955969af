"""Run an evolution (formulas §5, formulas §8): validate, get the dense model, drive pymoo's ask and tell over Ray, track.

Everything that can be wrong with the input is found in :func:`prepare_evolution` before Ray starts; a resumed
evolution continues from its last checkpoint and, every evaluation being deterministic, ends with the front an
uninterrupted run would have.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch.nn as nn
import yaml

from tuneprune.cluster.drivers import check_driver, space_document
from tuneprune.cluster.quiet import configure_quiet
from tuneprune.data import DatasetSplits
from tuneprune.evolution.archive import front_hypervolume, objective_matrix, pareto_front
from tuneprune.evolution.generation import evaluate_all, individuals, remote_evaluator
from tuneprune.evolution.problem import new_algorithm
from tuneprune.evolution.space import RESUMABLE, EvolutionSpace
from tuneprune.evolution.state import STATE_NAME, EvolutionState
from tuneprune.evolution.worker import EvalSettings, Individual, dense_payload, group_layers
from tuneprune.output.plotting import new_figure, save_figure
from tuneprune.output.progress import ProgressBar, say
from tuneprune.output.summaries import write_rows, write_summary
from tuneprune.shared.config import ConfigError, validate
from tuneprune.stochastic import dense_model_and_data, target_layers
from tuneprune.stochastic.pipeline import accuracies
from tuneprune.tracking import RunTracker, child_run, parent_run, store_missing
from tuneprune.tracking.index import index_results
from tuneprune.tracking.runs import duplicate_name
from tuneprune.training import RunConfig, resolve_device, save_model, untrained_model

DENSE_NAME = "dense.pt"


@dataclass
class PreparedEvolution:
    """A validated evolution, ready to run; ``state`` is the checkpoint a resume continues, ``dense`` the dense model,
    its run config and data when :func:`prepare_evolution` loaded and checked them (a ``checkpoint``, ``from_run``, or
    the ``dense.pt`` a resume reuses),
    so that :func:`run_evolution` does not load (or download) them again."""

    space: EvolutionSpace
    document: dict[str, Any]
    name: str
    tracking_uri: str
    results_dir: Path
    address: str | None = None
    resume: bool = False
    checkpoint: Path | None = None
    from_run: str | None = None
    state: EvolutionState | None = None
    dense: tuple[nn.Module, RunConfig, DatasetSplits] | None = None


@dataclass
class EvolutionSummary:
    """The final front (with deterministic pruning at the same rates), hypervolume history and where."""

    name: str
    parent_run_id: str
    tracking_uri: str
    results_dir: Path
    rate_names: list[str]
    dense: dict[str, float]
    front: list[dict[str, Any]] = field(default_factory=list)
    hypervolume: list[float] = field(default_factory=list)
    reference_point: list[float] = field(default_factory=list)
    evaluated: int = 0
    failed: int = 0
    samples: int = 1


def prepare_evolution(
    space_path: str | Path,
    overrides: list[str] | None = None,
    *,
    name: str | None = None,
    tracking_uri: str | None = None,
    results_root: str | Path = "runs",
    address: str | None = None,
    resume: bool = False,
    checkpoint: str | Path | None = None,
    from_run: str | None = None,
) -> PreparedEvolution:
    """Load and validate the space, the data location, the store and any checkpoint. Starts nothing."""
    document = space_document(space_path, overrides, name)
    space = validate(EvolutionSpace, document)
    resolve_device(space.train.device, "train.device")  # where the driver trains or loads the dense model
    place = check_driver(
        space_path, space.name, [(space.train.dataset, space.train.data_dir, space.train.download)],
        (space.resources.cpu, space.resources.gpu), address=address, tracking_uri=tracking_uri, results_root=results_root,
    )  # fmt: skip
    evolution_name, results_dir = place.name, place.results_dir
    state_path = results_dir / STATE_NAME
    state = None
    if state_path.exists():
        if not resume:
            raise ConfigError(
                f"name = {evolution_name!r}: {results_dir} holds an evolution; pass --resume to continue it or choose another --name"
            )
        state = EvolutionState.load(state_path)
        if state.fingerprint not in (space.fingerprint(), space.fingerprint(whole_train=True)):
            raise ConfigError(
                f"--resume: the space differs from the one {evolution_name!r} started with (only {', '.join(RESUMABLE)} "
                "may change)"
            )
        state.fingerprint = space.fingerprint()  # an older whole-train one is saved as this one from now on
        if space.algorithm.generations < state.generation:  # it would run none, and record the smaller number
            raise ConfigError(
                f"algorithm.generations = {space.algorithm.generations}: the evolution {evolution_name!r} has run "
                f"{state.generation} generations; --resume continues it to {state.generation} or more"
            )
    else:  # a driver killed before its first generation left only the parent run; a new one needs a free name
        store = None if store_missing(place.tracking_uri) else RunTracker(place.tracking_uri, space.experiment)
        parent = store.find_parent(evolution_name, "evolution") if store else None
        if parent is not None and not resume:
            raise duplicate_name(evolution_name, "evolution", f"MLflow run {parent.info.run_id}")
        if parent is None and resume:
            raise ConfigError(
                f"--resume --name {evolution_name!r}: no evolution of that name to resume in {results_dir} or {place.tracking_uri}"
            )
    # the dense.pt a resume reuses or a given model (a file, an MLflow run) is loaded now, a model to be trained checked
    # untrained: that it exists and has the layers the space names is checked before the evolution's MLflow run
    # (re)opens, not after training
    saved = results_dir / DENSE_NAME if resume and (results_dir / DENSE_NAME).exists() else None
    dense = None
    if saved or checkpoint is not None or from_run is not None:
        # --from-run looks in the --tracking-uri given, else in the default store and those searches recorded
        dense = dense_model_and_data(space.train, saved or checkpoint, None if saved else from_run, tracking_uri)
    group_layers(
        target_layers(dense[0] if dense else untrained_model(space.train), space.target), space.variables.groups
    )
    return PreparedEvolution(
        space, document, evolution_name, place.tracking_uri, results_dir, address, resume,
        Path(checkpoint) if checkpoint else None, from_run, state, dense,
    )  # fmt: skip


def _dense(prepared: PreparedEvolution, progress: bool) -> tuple[nn.Module, str, DatasetSplits]:
    """The dense model (kept as ``dense.pt`` in the results dir, so a resume reuses it), its name and data."""
    saved = prepared.results_dir / DENSE_NAME
    reuse = prepared.resume and saved.exists()
    model, run_config, data = prepared.dense or dense_model_and_data(
        prepared.space.train,
        saved if reuse else prepared.checkpoint,
        prepared.from_run,
        prepared.tracking_uri,
        progress,
    )
    if not reuse:
        save_model(model, run_config.model_dump(mode="json"), saved, data.num_classes, data.in_channels)
    return model, run_config.model, data


def _log_generation(
    tracker: RunTracker, parent_id: str, space: EvolutionSpace, generation: int,
    rows: list[dict[str, Any]], front: list[dict[str, Any]], hv: float, csv_path: Path,
) -> None:  # fmt: skip
    """A child run per generation (found again by key on resume; ended KILLED or FAILED if its logging is stopped):
    hypervolume, front size, population CSV."""
    key = f"gen-{generation:03d}"
    with child_run(tracker, parent_id, key, key, kind="generation") as (run_id, new_run):
        params = {"generation": generation, "reference_point": json.dumps(list(space.reference_point))}
        tracker.log_params(run_id, params, new_run=new_run)
        ok = [r for r in rows if r["status"] == "ok"]
        metrics = {"hypervolume": hv, "n_nondominated": len(front), "n_failed": len(rows) - len(ok)}
        for column in ("accuracy", "sparsity", "pruned_layers_sparsity"):
            metrics[f"max_{column}"] = max((r[column] for r in ok), default=0.0)
        tracker.log_metrics(run_id, metrics, step=generation)
        tracker.log_artifact(run_id, csv_path)
    tracker.log_metrics(parent_id, {"hypervolume": hv, "n_nondominated": len(front)}, step=generation)


def plot_front(front: list[dict[str, Any]], dense_accuracy: float, path: Path) -> Path:
    """Accuracy vs sparsity: the stochastic front, deterministic pruning at the same rates (where it did not fail), the
    dense model."""
    fig, (ax,) = new_figure(width=6.0, height=4.5)
    sparsity = [r["sparsity"] for r in front]
    ax.plot(sparsity, [r["accuracy"] for r in front], "o-", label="stochastic pruning (Pareto front, median of k)")
    compared = [r for r in front if r["deterministic_accuracy"] is not None]  # a failed comparison is not drawn
    ax.plot(
        [r["sparsity"] for r in compared],
        [r["deterministic_accuracy"] for r in compared],
        "s--",
        label="deterministic pruning, same rates",
    )
    ax.axhline(dense_accuracy, color="grey", linestyle=":", label="dense")
    ax.set_xlabel("sparsity")
    ax.set_ylabel("one-shot validation accuracy")
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def run_evolution(prepared: PreparedEvolution, *, progress: bool = True) -> EvolutionSummary:
    """Run (or resume) the evolution to ``algorithm.generations`` and write its front."""
    import ray

    from tuneprune.cluster.join import ensure_ray

    configure_quiet()
    space, out = prepared.space, prepared.results_dir
    say(f"opening the MLflow store {prepared.tracking_uri} ...")
    tracker = RunTracker(prepared.tracking_uri, space.experiment)
    with parent_run(tracker, prepared.name, "evolution", resume=prepared.resume) as parent_id:
        bar = None
        try:
            out.mkdir(parents=True, exist_ok=True)  # once the name is ours: a refused duplicate leaves no folder
            index_results(prepared.name, "evolution", out, prepared.tracking_uri, parent_id)
            tracker.log_params(
                parent_id, space.model_dump(mode="json", exclude={"name": True, "algorithm": {"generations"}})
            )
            tracker.set_tags(parent_id, {"evolution.generations": space.algorithm.generations})
            tracker.log_text(parent_id, yaml.safe_dump(prepared.document, sort_keys=False), "space.yaml")
            loading = prepared.checkpoint or prepared.from_run or prepared.state
            say("loading the dense model ..." if loading else "training the dense model ...")
            model, model_name, data = _dense(prepared, progress)
            batch_size = space.train.eval_batch_size
            dense = accuracies(model, data, batch_size)
            tracker.log_metrics(parent_id, {f"dense_{k}": v for k, v in dense.items()}, step=0)
            settings = EvalSettings(
                samples=space.samples,
                target=space.target,
                groups=space.variables.groups,
                batch_size=batch_size,
                threads=max(int(space.resources.cpu), 1),
                use_gpu=space.resources.gpu > 0,
                fail=frozenset(space.fail_individuals),
            )
            rate_names = space.variables.rate_names

            say(
                f"joining the Ray cluster at {prepared.address} ..." if prepared.address else "starting a local Ray ..."
            )
            ensure_ray(prepared.address)
            payload_ref = ray.put(dense_payload(model, model_name, data.num_classes, data.in_channels))
            val_ref = ray.put({"x": data.x_val.cpu(), "y": data.y_val.cpu()})
            evaluator = remote_evaluator(space.resources, space.max_retries, payload_ref, val_ref)

            state = prepared.state or EvolutionState(space.fingerprint(), new_algorithm(space))
            total = space.algorithm.generations
            bar = ProgressBar("evolve", total, min(state.generation, total)) if progress else None
            for generation in range(state.generation + 1, total + 1):
                population = state.algorithm.ask()
                batch = individuals(population.get("X"), generation, space.algorithm.seed)
                rows = evaluate_all(evaluator, batch, settings, rate_names)
                population.set("F", objective_matrix(rows))
                state.algorithm.tell(infills=population)
                state.rows.extend(rows)
                front = pareto_front(state.rows)
                hv = front_hypervolume(front, space.reference_point)
                state.hypervolume.append(hv)
                csv_path = write_rows(rows, out / "population" / f"gen-{generation:03d}.csv")
                _log_generation(tracker, parent_id, space, generation, rows, front, hv, csv_path)
                state.generation = generation
                state.save(out / STATE_NAME)
                if bar is not None:
                    bar.advance(f"hypervolume={hv:.4f} front={len(front)}")

            say("pruning the front's rates deterministically, for comparison ...")
            front = pareto_front(state.rows)
            batch = [Individual(0, i, 0.0, tuple(row[n] for n in rate_names), seed=0) for i, row in enumerate(front)]
            # the same rates pruned without noise; a testing aid's (0, i) fails the i-th
            plain = replace(settings, samples=1)
            results = evaluate_all(evaluator, batch, plain, rate_names)
            front = [  # a failed comparison is absent (None), not an accuracy of 0.0
                {**row, "deterministic_accuracy": r["accuracy"] if r["status"] == "ok" else None}
                for row, r in zip(front, results, strict=True)
            ]
            summary = EvolutionSummary(
                prepared.name, parent_id, prepared.tracking_uri, out, rate_names, dense, front,
                list(state.hypervolume), list(space.reference_point), len(state.rows),
                sum(r["status"] == "failed" for r in state.rows), space.samples,
            )  # fmt: skip
            for path in (  # written, then logged to the parent run
                write_rows(front, out / "front.csv"),
                plot_front(front, dense["val_acc"], out / "front.png"),
                write_summary(summary, out / "summary.json"),
            ):
                tracker.log_artifact(parent_id, path)
        finally:
            if bar is not None:
                bar.close()
    return summary
