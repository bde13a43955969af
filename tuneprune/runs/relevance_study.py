"""A relevance study from its config file to its curves, files and MLflow runs: what ``tuneprune relevance`` runs.

It lives in the application layer because it gets its model from :func:`obtain_model`
(a file, an MLflow run or training now), which ``tuneprune.relevance`` may not import.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tuneprune.data import check_data_dir, load_dataset
from tuneprune.output.progress import ProgressBar, say
from tuneprune.relevance.config import RelevanceStudyConfig
from tuneprune.relevance.report import write_report
from tuneprune.relevance.study import StudyResult, run_study
from tuneprune.relevance.tracking import KIND, StudyTracker
from tuneprune.runs.source import obtain_model
from tuneprune.shared.config import load_config
from tuneprune.tracking import RunTracker, check_tracking_reachable, default_tracking_uri, parent_run
from tuneprune.training import resolve_device, save_model


@dataclass(frozen=True)
class RelevanceStudyRun:
    """A finished study: its name, where it went (results dir, MLflow store and parent run) and its curves."""

    name: str
    results_dir: Path
    tracking_uri: str
    parent_run_id: str
    result: StudyResult


def run_relevance_study(
    config_path: Path,
    overrides: list[str] | None,
    *,
    checkpoint: Path | None = None,
    from_run: str | None = None,
    tracking_uri: str | None = None,
    name: str | None = None,
    results_root: Path = Path("runs"),
    progress: bool = True,
) -> RelevanceStudyRun:
    """Validate, get the model, score and prune channels along every ranking, write and track the curves.

    The study's parent run ends FINISHED, KILLED on Ctrl-C, or FAILED with the error (:func:`~tuneprune.tracking.parent_run`).
    A model trained here is kept as ``model.pt`` so that ``--from-run PARENT_RUN_ID`` can study it again.
    """
    config = load_config(RelevanceStudyConfig, config_path, overrides)
    resolve_device(config.relevance.device, "relevance.device")  # before the model trains and the parent run opens
    # Where the studied model comes from, as logged on the parent run.
    if checkpoint is not None:
        source = {"checkpoint": str(checkpoint.resolve())}
    elif from_run is not None:
        source = {"from_run": from_run}
    else:  # trained now: the train section's data must exist
        source = {"trained": "train section"}
        check_data_dir(config.train.dataset, config.train.data_dir, config.train.download)
    name = name or config.name or Path(config_path).stem
    uri = tracking_uri or default_tracking_uri()
    check_tracking_reachable(uri)
    study = StudyTracker(RunTracker(uri, config.experiment), name)
    if progress:
        say("training the model ..." if "trained" in source else "loading the model ...")
    # --from-run: in the given store, else the default one or one a search recorded (locate_run), as prune-stochastic
    model, run_config = obtain_model(config.train, checkpoint, from_run, tracking_uri, progress)
    data = load_dataset(run_config)
    out = (results_root / name).resolve()
    files = []
    if "trained" in source:
        files.append(
            save_model(model, run_config.model_dump(mode="json"), out / "model.pt", data.num_classes, data.in_channels)
        )
    with parent_run(study.tracker, name, KIND, resume=False) as parent_id:
        study.start(parent_id, config.model_dump(mode="json"), source)
        bar = None
        try:
            if progress:
                say(f"scoring channels by LRP ({config.relevance.rule}) on {config.relevance.eval_samples} samples ...")
                bar = ProgressBar("rankings", len(config.rankings) + len(config.deltas))

            def on_curve(ranking: str, rows: list) -> None:
                study.log_curve(ranking, rows)
                if bar is not None:
                    bar.advance(f"{ranking}: acc {rows[-1]['acc']:.3f} at {rows[-1]['percentage']}%")

            result = run_study(model, run_config, data, config, on_curve=on_curve)
            files += write_report(result, out, f"{name} ({run_config.model}, {run_config.dataset})")
        finally:
            if bar is not None:
                bar.close()
        study.finish(result, files)
    return RelevanceStudyRun(name, out, uri, study.parent_id, result)
