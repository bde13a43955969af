"""An output directory that is a file, or lies under one, is refused in one line with exit 2 before any work starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuneprune.cli import main

ROOT = Path(__file__).resolve().parents[2]
SHORT = ["--no-progress", "--set", "train.epochs=1"]  # on the old code each trained its model before it failed
COMMANDS = {
    "train": (["train", str(ROOT / "configs/digits_dense.yaml"), "--no-progress", "--set", "epochs=1"], "--out"),
    "report": (["report", "digits_demo"], "--out"),
    "fit-alpha": (["fit-alpha", "alpha_search"], "--out"),
    "fit-scheduler": (["fit-scheduler", "sched_search"], "--out"),
    "prune-stochastic": (["prune-stochastic", str(ROOT / "configs/stochastic_digits.yaml"), *SHORT], "--out"),
    "relevance": (["relevance", str(ROOT / "configs/relevance_digits.yaml"), *SHORT], "--results-dir"),
    "evolve": (["evolve", str(ROOT / "search_spaces/evolve_digits.yaml"), *SHORT], "--results-dir"),
}


@pytest.mark.parametrize("below", [False, True], ids=["file", "below-a-file"])
@pytest.mark.parametrize("command", COMMANDS)
def test_an_output_directory_that_is_a_file_exits_2_naming_the_option(command, below, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("not a directory")
    argv, option = COMMANDS[command]
    out = "notes.txt/figures" if below else "notes.txt"
    with pytest.raises(SystemExit) as exit_:
        main([*argv, option, out])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == f"tuneprune {command}: error: argument {option}: notes.txt is a file, not a directory"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # no store, no results
