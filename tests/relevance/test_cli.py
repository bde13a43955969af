"""``tuneprune relevance``: one-line config errors (exit 2) and an end-to-end run tracked in MLflow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from tuneprune.cli import main

STUDY = {
    "name": "rel_e2e",
    "train": {"model": "small_cnn", "dataset": "digits", "epochs": 1, "batch_size": 64, "lr": 0.05},
    "relevance": {"rule": "alpha2beta1", "eval_samples": 64},
    "percentages": [0, 50, 90],
    "rankings": ["relevance", "parameter", "random", "combined"],
    "deltas": [0.0, 0.5, 1.0],
}


def write(tmp_path, data) -> str:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.mark.parametrize(
    ("change", "overrides", "field"),
    [
        ({"relevance": {"rule": "lrp0"}}, [], "relevance.rule"),
        ({"percentages": [10, 100]}, [], "percentages.1"),
        ({"bogus": 1}, [], "bogus"),
        ({}, ["deltas=[0.5, 1.5]"], "deltas.1"),
        ({}, ["train.model=nope"], "train.model"),
        pytest.param(  # checked before the model trains and the study's MLflow run opens, which then kept the name
            {},
            ["relevance.device=cuda"],
            "relevance.device = 'cuda': CUDA is not available on this machine",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here"),
        ),
    ],
)
def test_bad_config_exits_2_with_one_line_naming_the_field(tmp_path, capsys, change, overrides, field):
    args = ["relevance", write(tmp_path, {**STUDY, **change}), "--tracking-uri", f"sqlite:///{tmp_path}/mlruns.db"]
    assert main(args + [a for o in overrides for a in ("--set", o)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("tuneprune relevance: error: ")
    assert field in err
    assert not (tmp_path / "mlruns.db").exists()


def test_end_to_end_on_digits_writes_mlflow_parent_children_plots_and_csv(tmp_path, capsys):
    from mlflow.tracking import MlflowClient

    from tuneprune.tracking import TAG_KIND, TAG_TRIAL, RunTracker

    uri = f"sqlite:///{tmp_path}/mlruns.db"
    args = [
        "relevance",
        write(tmp_path, STUDY),
        "--tracking-uri",
        uri,
        "--results-dir",
        str(tmp_path / "runs"),
        "--json",
    ]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    expected = {"relevance", "parameter", "random", "combined", "delta=0", "delta=0.5", "delta=1"}
    assert set(out["curves"]) == expected
    assert out["curves"]["delta=0"] == out["curves"]["parameter"]
    assert out["curves"]["delta=1"] == out["curves"]["relevance"]
    for curve in out["curves"].values():
        assert [row["percentage"] for row in curve] == [0, 50, 90]
        assert curve[0]["acc"] == out["baseline"]["acc"]
        assert curve[0]["pruned_channels"] == 0

    tracker = RunTracker(uri)
    parent = tracker.find_parent("rel_e2e", "relevance")
    assert parent.info.run_id == out["parent_run_id"]
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["channels"] == 224
    children = tracker.children(parent.info.run_id)
    assert {c.data.tags[TAG_TRIAL] for c in children} == expected
    assert all(c.data.tags[TAG_KIND] == "ranking" and c.info.status == "FINISHED" for c in children)
    child = next(c for c in children if c.data.tags[TAG_TRIAL] == "delta=0.5")
    assert child.data.params == {"ranking": "mixed", "delta": "0.5"}
    history = MlflowClient(uri).get_metric_history(child.info.run_id, "acc")
    assert sorted(m.step for m in history) == [0, 50, 90]
    artifacts = {a.path for a in MlflowClient(uri).list_artifacts(parent.info.run_id)}
    assert {"curves.csv", "rankings.png", "deltas.png", "model.pt"} <= artifacts
    assert {p.name for p in (tmp_path / "runs" / "rel_e2e").iterdir()} == {
        "curves.csv",
        "rankings.png",
        "deltas.png",
        "model.pt",
    }

    # The saved model is reusable, and the name is not: a second study must choose another.
    again = ["relevance", write(tmp_path, STUDY), "--tracking-uri", uri, "--from-run", parent.info.run_id]
    assert main(again) == 2
    assert "choose another --name" in capsys.readouterr().err
    light = ["--set", "rankings=[parameter]", "--set", "deltas=[]", "--set", "percentages=[0]", "--json"]
    assert main([*again, "--name", "rel_again", "--results-dir", str(tmp_path / "runs"), *light]) == 0
    assert json.loads(capsys.readouterr().out)["baseline"] == out["baseline"]


def test_from_run_finds_a_trial_in_the_store_a_search_recorded(indexed_model_run, tmp_path):
    """``--from-run`` of a search's trial from another directory, without ``--tracking-uri``: the model is found in the
    stores the index of searches records, as ``prune-stochastic --from-run`` finds it; the study is recorded in
    ``./mlruns.db`` (the old code looked for the run only there and refused it)."""
    from tuneprune.runs.relevance_study import run_relevance_study

    path = write(tmp_path, {**STUDY, "percentages": [50], "rankings": ["parameter"], "deltas": []})
    study = run_relevance_study(Path(path), None, from_run=indexed_model_run, progress=False)
    assert study.tracking_uri == f"sqlite:///{tmp_path / 'elsewhere' / 'mlruns.db'}"
    assert [row["percentage"] for row in study.result.curves["parameter"]] == [50]
