"""Every shipped search space validates, on its own dataset and overridden to digits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tuneprune.evolution.runner import prepare_evolution
from tuneprune.evolution.space import RateInterval
from tuneprune.search import prepare_search
from tuneprune.shared.config import ConfigError

ALL = sorted((Path(__file__).resolve().parents[2] / "search_spaces").glob("*.yaml"))
EVOLUTIONS = [p for p in ALL if p.stem.startswith("evolve_")]
SPACES = [p for p in ALL if p not in EVOLUTIONS]
DIGITS = ["base.dataset=digits", "base.epochs=1", "resources.gpu=0", "resources.cpu=1"]


def test_the_required_spaces_ship():
    names = {p.stem for p in SPACES}
    assert {"digits_demo", "feather_alpha", "adaptive_scheduler", "weight_drop"} <= names


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.stem)
def test_space_validates_on_digits(path, tmp_path):
    prepared = prepare_search(
        path,
        DIGITS,
        tracking_uri=f"sqlite:///{tmp_path}/m.db",
        storage_url=f"sqlite:///{tmp_path}/o.db",
        results_root=tmp_path,
    )
    for point in prepared.space.grid_points():
        config = prepared.space.resolve(point, {})
        assert config.dataset == "digits"


@pytest.mark.parametrize("path", EVOLUTIONS, ids=lambda p: p.stem)
def test_evolution_space_validates_on_digits(path, tmp_path):
    prepared = prepare_evolution(
        path,
        ["train.dataset=digits", "train.epochs=1", "resources.gpu=0", "resources.cpu=1"],
        tracking_uri=f"sqlite:///{tmp_path}/m.db",
        results_root=tmp_path,
    )
    assert prepared.space.train.dataset == "digits"
    rate = prepared.space.variables.rate
    assert (rate.low, rate.high) == (0.01, 0.99)  # formulas §5: the pruning rate r from 0.01 to 0.99


def test_rate_bounds_default_to_spec():
    rate = RateInterval()
    assert (rate.low, rate.high) == (0.01, 0.99)  # formulas §5


@pytest.mark.parametrize("path", [p for p in SPACES if "cifar" in p.read_text()], ids=lambda p: p.stem)
def test_cifar_space_without_data_names_the_directory(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"data_dir = 'data'.*cifar-100-python"):
        prepare_search(
            path,
            tracking_uri=f"sqlite:///{tmp_path}/m.db",
            storage_url=f"sqlite:///{tmp_path}/o.db",
            results_root=tmp_path,
        )


def test_dotted_grid_keys_can_be_overridden(tmp_path):
    path = Path(__file__).resolve().parents[2] / "search_spaces" / "feather_alpha.yaml"
    prepared = prepare_search(
        path,
        [*DIGITS, "grid.model=[resnet20]", "grid.sparsity.target=[0.95,0.99]"],
        tracking_uri=f"sqlite:///{tmp_path}/m.db", storage_url=f"sqlite:///{tmp_path}/o.db", results_root=tmp_path,
    )  # fmt: skip
    assert prepared.space.grid_points() == [
        {"model": "resnet20", "sparsity.target": 0.95},
        {"model": "resnet20", "sparsity.target": 0.99},
    ]


def test_a_space_document_is_left_as_the_caller_gave_it(tmp_path):
    """``prepare_search(document=..., num_samples=...)`` searches a changed copy: the caller's space is not rewritten."""
    document = {
        "name": "doc",
        "base": {"model": "small_cnn", "dataset": "digits"},
        "params": {"lr": {"type": "float", "low": 0.01, "high": 0.1}},
        "objectives": {"val_acc": "max"},
        "num_samples": 2,
    }
    given = {**document}
    prepared = prepare_search(
        "unused.yaml", document=document, num_samples=5,
        tracking_uri=f"sqlite:///{tmp_path}/m.db", storage_url=f"sqlite:///{tmp_path}/o.db", results_root=tmp_path,
    )  # fmt: skip
    assert prepared.space.num_samples == 5
    assert document == given


FITTED_RULE = "c1: 0.026\nc2: 23.09\nc3: 22.08\nc4: 0.093\nfitted_range: [0.9, 0.95]\npole_margin: 0.005\n"


@pytest.mark.parametrize(
    "where",
    [
        {"grid": {"sparsity.theta.alpha": ["RULE", 0.1], "sparsity.target": [0.95, 0.99]}},
        {
            "grid": {"sparsity.target": [0.95, 0.99]},
            "params": {"sparsity.theta.alpha": {"type": "categorical", "choices": ["RULE", 0.1]}},
        },
        {
            "methods": {"fit": {"sparsity.theta.alpha": "RULE"}},
            "grid": {"method": ["fit"], "sparsity.target": [0.95, 0.99]},
        },
    ],
    ids=["grid", "params", "method"],
)
def test_a_fitted_alpha_beside_a_grid_target_past_its_range_exits_2_before_ray(tmp_path, capsys, where):
    """A 'fitted:PATH' alpha (grid, param or method) swept beside a grid target the rule does not cover, each accepted
    alone: refused in one line naming the field, the value and the range, exit 2, before Ray starts or a store is made
    (the trial of that pair failed alone, after Ray started and the others trained)."""
    from tuneprune.cli import main

    rule = tmp_path / "alpha_rule.yaml"
    rule.write_text(FITTED_RULE)
    sparsity = {"target": 0.95, "theta": {"policy": "log_density", "alpha": 0.1}}
    text = yaml.safe_dump(
        {"base": {"model": "small_cnn", "dataset": "digits", "epochs": 1, "sparsity": sparsity}, **where}
    )
    space = tmp_path / "fitted.yaml"
    space.write_text(text.replace("RULE", f"fitted:{rule}"))
    stores = ["--tracking-uri", f"sqlite:///{tmp_path}/m.db", "--storage", f"sqlite:///{tmp_path}/o.db"]
    assert main(["search", str(space), *stores, "--results-dir", str(tmp_path / "runs"), "--no-progress"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "sparsity.target=0.99" in error
    assert "sparsity.target = 0.99: the rule" in error
    assert "covers only targets up to 0.955, the range 0.9..0.95" in error
    assert not (tmp_path / "m.db").exists()
    assert not (tmp_path / "runs").exists()


def test_a_sampler_seed_past_32_bits_at_any_grid_point_is_refused_at_load():
    """Grid point i's sampler is seeded ``sampler.seed + i`` and Optuna's samplers take 32-bit seeds: a seed that
    reached 2^32 at a grid point ended in numpy's traceback (exit 1) after the parent run opened, FAILED, and the first
    studies were made (the name then taken). Refused at load, naming the field and the allowed range; every seed
    allowed gives every grid point a sampler."""
    from tuneprune.search.space import load_space
    from tuneprune.search.studies import make_sampler

    document = {
        "base": {"model": "small_cnn", "dataset": "digits"},
        "params": {"lr": {"type": "float", "low": 0.01, "high": 0.1}},
        "grid": {"seed": [0, 1, 2]},
    }
    with pytest.raises(ConfigError, match=r"sampler.seed = 4294967294: .*allowed: \[0, 4294967293\]"):
        load_space({**document, "sampler": {"seed": 2**32 - 2}})
    space = load_space({**document, "sampler": {"seed": 2**32 - 3}})
    for offset in range(len(space.grid_points())):
        make_sampler(space, offset)


@pytest.mark.parametrize(
    ("swept", "overlay", "named"),
    [
        ({"grid": {"sparsity.target": [0.5, 0.9]}}, {"sparsity.target": 0.7}, "sparsity.target, which grid.sparsity"),
        ({"grid": {"sparsity.target": [0.5, 0.9]}}, {"sparsity": {"target": 0.7}}, "sparsity, which grid.sparsity.t"),
        ({"params": {"lr": {"type": "float", "low": 0.01, "high": 0.1}}}, {"lr": 0.05}, "lr, which params.lr also"),
    ],
)
@pytest.mark.parametrize("method_first", [True, False])
def test_a_method_setting_a_path_the_grid_or_params_set_is_refused_at_load(swept, overlay, named, method_first):
    """A ``methods`` overlay that sets a path the grid (or a searched param) also sets, or a section holding it, was
    silently overridden, the winner depending on the grid's key order, so a trial's label could lie. Refused at load,
    in one line naming the method, the path and where else it is set, whichever order the grid gives; an overlay of
    other paths is accepted."""
    from tuneprune.search.space import load_space

    methods = {"plain": {"lr": 0.02} if "lr" not in overlay else {"momentum": 0.5}, "odd": overlay}
    grid = swept.get("grid", {})
    grid = {"method": list(methods), **grid} if method_first else {**grid, "method": list(methods)}
    document = {
        "base": {"model": "small_cnn", "dataset": "digits", "sparsity": {"target": 0.5}},
        "params": swept.get("params", {}),
        "grid": grid,
        "methods": methods,
    }
    with pytest.raises(ConfigError, match=rf"^methods\.odd: sets {named}.*; set it in one place$"):
        load_space(document)
    assert load_space({**document, "methods": {**methods, "odd": {"momentum": 0.8}}}).methods["odd"] == {
        "momentum": 0.8
    }


@pytest.mark.parametrize("where", ["grid", "params"])
def test_the_data_of_every_grid_point_and_param_is_checked_before_ray(tmp_path, where):
    """Only the first grid point's data were looked for: a grid (or a searched dataset) over cifar10 and cifar100 with
    cifar100 missing started Ray, trained the cifar10 trials and failed every cifar100 one. Refused in one line
    naming the directory and the dataset missing, before anything starts."""
    (tmp_path / "data" / "cifar-10-batches-py").mkdir(parents=True)
    datasets = ["cifar10", "cifar100"]
    searched = {"dataset": {"type": "categorical", "choices": datasets}}
    document = {
        "name": "data",
        "base": {"model": "small_cnn", "dataset": "cifar10", "data_dir": str(tmp_path / "data")},
        "params": searched if where == "params" else {"lr": {"type": "float", "low": 0.01, "high": 0.1}},
        **({"grid": {"dataset": datasets}} if where == "grid" else {}),
    }
    with pytest.raises(ConfigError, match=r"data_dir = '.*/data': cifar100 not found, expected .*/cifar-100-python/"):
        prepare_search(
            "unused.yaml", document=document,
            tracking_uri=f"sqlite:///{tmp_path}/m.db", storage_url=f"sqlite:///{tmp_path}/o.db", results_root=tmp_path,
        )  # fmt: skip
    assert not (tmp_path / "m.db").exists()


@pytest.mark.parametrize(
    ("where", "named"),
    [
        ({"base": {"model": "small_cnn", "dataset": "digits", "device": "cuda"}}, "base"),
        ({"grid": {"device": ["cpu", "cuda"]}}, "grid point device=cuda"),
        (
            {"base": {"model": "small_cnn", "dataset": "digits", "relevance": {"device": "cuda"}}},
            "base: relevance.device = 'cuda'",  # the relevance pass, after the trial trained
        ),
    ],
)
def test_a_cuda_trial_without_a_gpu_is_refused_at_load(where, named):
    """Ray hides every GPU from a trial actor that asks for none (``CUDA_VISIBLE_DEVICES=''``): ``device: cuda`` with
    ``resources.gpu: 0`` started Ray and failed every such trial ('CUDA is not available'). Refused at load naming
    both fields and what is allowed; with a GPU per trial it is accepted."""
    from tuneprune.search.space import load_space

    document = {
        "base": {"model": "small_cnn", "dataset": "digits"},
        "params": {"lr": {"type": "float", "low": 0.01, "high": 0.1}},
        **where,
    }
    with pytest.raises(ConfigError, match=rf"^{named}(: device = 'cuda')? with resources.gpu = 0: .*allowed: "):
        load_space(document)
    assert load_space({**document, "resources": {"gpu": 0.5}}).resources.gpu == 0.5


@pytest.mark.parametrize("experiment", ["", "x" * 501])
def test_an_experiment_name_mlflow_refuses_is_refused_at_load(tmp_path, experiment):
    """MLflow refuses an experiment name that is empty or over 500 characters: a search or a study with one made its
    results folder and ended in MLflow's traceback, exit 1. Refused at load, naming the field and the lengths allowed."""
    from tuneprune.search.space import load_space
    from tuneprune.search.study_config import load_study

    base = {"model": "small_cnn", "dataset": "digits"}
    with pytest.raises(ConfigError, match=r"^experiment = '.*': String should have (at least 1|at most 500) char"):
        load_space({"base": base, "grid": {"seed": [0]}, "experiment": experiment})
    study = tmp_path / "study.yaml"
    study.write_text(
        yaml.safe_dump({"base": base, "experiment": experiment, "methods": {"a": {}}, "targets": [0.5], "seeds": [0]})
    )
    with pytest.raises(ConfigError, match=r"^experiment = '.*': String should have (at least 1|at most 500) char"):
        load_study(study)


@pytest.mark.parametrize(("resources", "field"), [({"cpu": 0.00001}, "cpu"), ({"gpu": 0.00005}, "gpu")])
def test_a_resource_finer_than_ray_takes_is_refused_at_load(resources, field):
    """Ray refuses a fractional resource below 0.0001: ``resources.cpu: 0.00001`` started Ray, then ended in Ray's
    traceback (exit 1, the parent run FAILED). Refused at load naming the field and the range; 0.0001 and a GPU
    count of 0 are accepted."""
    from tuneprune.search.space import ResourcesConfig
    from tuneprune.shared.config import validate

    with pytest.raises(ConfigError, match=rf"^resources\.{field} = {resources[field]}: .*0\.0001"):
        validate(ResourcesConfig, resources, prefix="resources.")
    assert validate(ResourcesConfig, {field: 0.0001}).model_dump()[field] == 0.0001
    assert validate(ResourcesConfig, {"gpu": 0}).gpu == 0


def test_a_min_size_above_every_layer_of_a_grid_points_model_is_refused_at_load():
    """``sparsity.min_size`` above every layer of the model leaves nothing to prune, which a run finds only when it
    builds the model: a search drawing it started Ray and failed those trials. Refused at load naming the grid point,
    the param, the field and the allowed range (up to the model's largest layer)."""
    from tuneprune.models import create_model
    from tuneprune.search.space import load_space
    from tuneprune.sparsity.layers import prunable_layers

    largest = max(m.weight.numel() for _, m in prunable_layers(create_model("resnet20", 10, 1)))  # below small_cnn's

    def space(high: int) -> dict[str, Any]:
        return {
            "base": {"model": "small_cnn", "dataset": "digits", "sparsity": {"target": 0.9}},
            "grid": {"model": ["small_cnn", "resnet20"]},
            "params": {"sparsity.min_size": {"type": "int", "low": 0, "high": high}},
        }

    with pytest.raises(
        ConfigError,
        match=rf"^grid point model=resnet20 with params.sparsity.min_size = {largest + 1}: sparsity.min_size = "
        rf"{largest + 1}: .* allowed: up to {largest} ",
    ):
        load_space(space(largest + 1))
    assert load_space(space(largest)).params["sparsity.min_size"].samples()[1] == largest


@pytest.mark.parametrize("name", [".", ".."])
def test_a_space_named_by_dots_alone_is_refused(name):
    """A search's name is a folder under the results directory: ``..`` put its results beside that directory (and
    deleted the best*.yaml files found there as stale), ``.`` into it (``--name``: tests/cli/test_names.py)."""
    from tuneprune.search.space import load_space

    with pytest.raises(ConfigError, match=rf"^name = '{name}': "):
        load_space({"name": name, "base": {"model": "small_cnn", "dataset": "digits"}, "grid": {"seed": [0]}})


def test_a_reduction_factor_giving_more_rungs_than_epochs_is_refused_at_load():
    """ASHA's rungs are at ``grace_period * reduction_factor^k`` epochs up to the longest trials' (formulas §10.9): a
    reduction factor just above 1 made tens of thousands of rungs, which the rule actor kept and wrote to its file
    at every record, after Ray started, for at most ``epochs - grace_period + 1`` whole epochs they can be at. Refused
    at load naming the field and the smallest factor allowed for those epochs, which is accepted."""
    from tuneprune.search.early_stop import rung_count
    from tuneprune.search.space import load_space

    document = {
        "base": {"model": "small_cnn", "dataset": "digits", "epochs": 5},
        "grid": {"epochs": [10, 100]},  # the longest trials' epochs count
        "early_stopping": {"type": "asha", "grace_period": 1, "reduction_factor": 1.0001},
    }
    with pytest.raises(ConfigError, match=r"^early_stopping.reduction_factor = 1.0001: .* allowed: >= 1.0472 "):
        load_space(document)
    space = load_space({**document, "early_stopping": {"type": "asha", "reduction_factor": 1.0472}})
    assert rung_count(1, space.early_stopping.reduction_factor, space.max_epochs()) <= 100
    load_space({**document, "early_stopping": {"type": "asha", "grace_period": 200, "reduction_factor": 1.0001}})


@pytest.mark.parametrize(
    ("key", "values", "refused"),
    [
        ("sparsity.target", [0.95, "0.95"], r"0.95 and '0.95' print alike \(0.95\)"),
        ("seed", [1, "1"], r"1 and '1' print alike \(1\)"),
        ("channels_last", [True, "true"], r"True and 'true' are one value to the run config"),
        ("seed", [1, 1.0], r"1.0 is listed twice"),
    ],
)
def test_grid_values_that_print_alike_or_read_as_one_are_refused_at_load(key, values, refused):
    """A grid point is named by its values' printed form (its Optuna study's name, its runs' names): ``0.95`` and
    ``"0.95"`` passed the check of values listed twice, shared one study (driven twice, twice the trials) and were
    listed twice; ``true`` and ``"true"`` are one value to the run config, trained twice under two names. Refused at
    load naming the grid key and both values."""
    from tuneprune.search.space import load_space

    base = {"model": "small_cnn", "dataset": "digits", "sparsity": {"target": 0.9}}
    with pytest.raises(ConfigError, match=rf"grid.{key}: {refused}"):
        load_space({"base": base, "grid": {key: values}})


@pytest.mark.parametrize(
    ("where", "named"),
    [
        ({"grid": {"batch_size": [64, 68]}}, "grid point batch_size=68"),
        ({"grid": {"val_fraction": [0.1, 0.2], "batch_size": [82]}}, "grid point val_fraction=0.2 batch_size=82"),
    ],
)
def test_a_batch_size_leaving_one_image_batchnorm_cannot_train_on_is_refused_at_load(tmp_path, where, named):
    """1293 digits training images (val_fraction 0.1) in batches of 68 leave a last batch of one image, which
    resnet18's BatchNorm at 8 px cannot train on: each trial found it when it loaded its data, after Ray started, and
    failed alone. Refused at load, without loading the data, naming the grid point, the field and what is allowed, in
    the words of the trial's own check; a model that trains on one image is accepted."""
    from tuneprune.search.space import load_space
    from tuneprune.search.study_config import load_study

    base = {"model": "resnet18", "dataset": "digits", "image_size": 8, "batch_size": 64}
    document = {"base": base, "params": {"lr": {"type": "float", "low": 0.01, "high": 0.1}}, **where}
    with pytest.raises(
        ConfigError, match=rf"^{named}: batch_size = \d+: the last batch of each epoch holds 1 of the \d+ training "
        r"images and resnet18's BatchNorm cannot train on one image; allowed: "
    ):  # fmt: skip
        load_space(document)
    assert load_space({**document, "base": {**base, "model": "small_cnn"}}).base["model"] == "small_cnn"
    study = tmp_path / "study.yaml"  # a study's cells, the same check
    study.write_text(
        yaml.safe_dump({"base": {**base, "batch_size": 68}, "methods": {"a": {}}, "targets": [0.5], "seeds": [0]})
    )
    with pytest.raises(ConfigError, match=r"batch_size = 68: the last batch of each epoch holds 1 of the 1293 "):
        load_study(study)


@pytest.mark.parametrize(
    ("param", "drawn"),
    [
        ({"type": "int", "low": 64, "high": 70}, "68"),  # bounds 64 and 70 leave 13 and 33
        ({"type": "int", "low": 64, "high": 72, "step": 4}, "68"),
        ({"type": "int", "low": 32, "high": 128, "log": True}, "34, 38, 68, 76"),
        ({"type": "float", "low": 64.0, "high": 72.0, "step": 2.0}, "68"),  # 66.0, drawn next to low, leaves 39
        ({"type": "categorical", "choices": [64, 68]}, "68"),
        ({"type": "int", "low": 2, "high": 1300}, r"2, 4, 17, 19, 34 and 6 more \(11 values\)"),  # 1292 = 4 * 17 * 19
    ],
)
def test_a_searched_batch_size_that_can_draw_one_leaving_one_image_is_refused_at_load(param, drawn):
    """A searched batch_size was checked at its bounds (and the value next to low) only: a range drawing 68 in between
    (1293 digits training images at val_fraction 0.1, a last batch of one image, which resnet18's BatchNorm at 8 px
    cannot train on) was accepted, and each trial drawing it failed on its worker after Ray started. Every value the
    param can draw is checked: refused in one line naming the param, the values, the training images and what is
    allowed; a model that trains on one image is accepted."""
    from tuneprune.search.space import load_space

    base = {"model": "resnet18", "dataset": "digits", "image_size": 8, "batch_size": 64}
    document = {"base": base, "params": {"batch_size": param}}
    with pytest.raises(
        ConfigError, match=rf"^base: params.batch_size can draw {drawn}, leaving a last batch of 1 of the 1293 "
        r"training images, and resnet18's BatchNorm cannot train on one image; allowed: a range, step or choices "
        r"without them \(1293 mod batch_size != 1, batch_size >= 2\)$"
    ):  # fmt: skip
        load_space(document)
    assert load_space({**document, "base": {**base, "model": "small_cnn"}}).params["batch_size"].type == param["type"]


def test_a_searched_batch_size_is_checked_against_each_grid_points_training_images():
    """The training images depend on the grid point (1293 digits at val_fraction 0.1, 1149 at 0.2): a range of batch
    sizes that leaves one image at one grid point only is refused naming that grid point and its training images."""
    from tuneprune.search.space import load_space

    base = {"model": "resnet18", "dataset": "digits", "image_size": 8, "batch_size": 64}
    document = {
        "base": base,
        "grid": {"val_fraction": [0.1, 0.2]},
        "params": {"batch_size": {"type": "int", "low": 80, "high": 84}},
    }
    with pytest.raises(
        ConfigError,
        match=r"^grid point val_fraction=0.2: params.batch_size can draw 82, leaving a last batch of 1 of the 1149 ",
    ):
        load_space(document)
    assert load_space({**document, "grid": {"val_fraction": [0.1]}}).grid == {"val_fraction": [0.1]}
