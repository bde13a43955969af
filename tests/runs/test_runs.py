"""The application layer: execute() trains, runs the spec's final evaluations and saves a loadable model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tuneprune.runs import TrialSpec, execute
from tuneprune.shared.config import validate
from tuneprune.training import RunConfig, load_model


def test_execute_trains_evaluates_the_relevance_point_and_saves(tmp_path):
    spec = validate(
        TrialSpec,
        {"model": "small_cnn", "dataset": "digits", "epochs": 1, "batch_size": 64, "device": "cpu",
         "sparsity": {"target": 0.5, "scheduler": {"type": "constant"}}, "relevance": {"percentage": 50, "eval_samples": 64}},
    )  # fmt: skip
    logged: list[tuple[dict[str, float], int]] = []
    executed = execute(spec, tmp_path, lambda metrics, step: logged.append((metrics, step)))
    [(final, step)] = logged
    assert step == 1
    assert set(final) == {"pruned_acc", "pruned_loss", "pruned_fraction"}
    assert executed.summary.items() >= final.items()
    assert executed.result.history[-1].items() >= final.items()
    assert executed.summary["final_sparsity"] == pytest.approx(0.5, abs=1e-3)
    assert executed.model_path == tmp_path / "model.pt"
    assert executed.model_path is not None
    model, config = load_model(executed.model_path)  # the run config's part of the saved spec rebuilds the model
    assert type(config) is RunConfig
    assert config.model_dump() == RunConfig.model_validate(spec.model_dump(exclude={"relevance"})).model_dump()
    for a, b in zip(model.state_dict().values(), executed.result.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_execute_without_out_saves_nothing():
    spec = validate(
        TrialSpec, {"model": "small_cnn", "dataset": "digits", "epochs": 1, "batch_size": 128, "device": "cpu"}
    )
    executed = execute(spec, None)
    assert executed.model_path is None
    assert "final_sparsity" not in executed.summary
    assert "val_acc" in executed.summary


def test_a_loaded_model_is_evaluated_on_the_data_dir_and_threads_the_caller_sets(tmp_path):
    """A model trained on another machine (its config's data_dir /scratch/...) could not be pointed at this machine's
    data: --checkpoint and --from-run took data_dir, download and num_threads from the model file, and
    ``--set train.data_dir=...`` was ignored. The fields of MACHINE_FIELDS the caller's config sets itself win; the
    others, and everything the model trained with, are the file's."""
    from tuneprune.models import create_model
    from tuneprune.runs import obtain_model
    from tuneprune.training import save_model

    trained = RunConfig(model="small_cnn", dataset="digits", epochs=3, data_dir="/scratch/data", num_threads=8)
    path = tmp_path / "model.pt"
    save_model(create_model("small_cnn", 10, 1), trained.model_dump(mode="json"), path, 10, 1)
    here = RunConfig.model_validate({"model": "small_cnn", "dataset": "digits", "data_dir": str(tmp_path)})
    _, config = obtain_model(here, checkpoint=path)
    assert (config.data_dir, config.num_threads, config.epochs) == (tmp_path, 8, 3)
    _, config = obtain_model(RunConfig(model="small_cnn", dataset="digits", num_threads=2), checkpoint=path)
    assert (config.data_dir, config.num_threads) == (Path("/scratch/data"), 2)
