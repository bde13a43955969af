"""An output directory that is a file, lies under one or cannot be made is refused in one line with exit 2 before any
work starts."""

from __future__ import annotations

import os
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
    "search": (["search", str(ROOT / "search_spaces/digits_demo.yaml"), "--no-progress"], "--results-dir"),
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


@pytest.mark.parametrize("command", COMMANDS)
def test_an_output_directory_that_cannot_be_made_exits_2_naming_the_option(command, tmp_path, monkeypatch, capsys):
    """Under /proc nothing can be made (not even by root): train, for one, trained its model and then died with
    FileNotFoundError at its first checkpoint, exit 1."""
    monkeypatch.chdir(tmp_path)
    argv, option = COMMANDS[command]
    with pytest.raises(SystemExit) as exit_:
        main([*argv, option, "/proc/tuneprune-out/figures"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == f"tuneprune {command}: error: argument {option}: /proc is not a writable directory"
    assert list(tmp_path.iterdir()) == []  # no store, no results


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes in a read-only (mode 0o555) folder")
def test_a_read_only_output_directory_exits_2(tmp_path, monkeypatch, capsys):
    read_only = tmp_path / "read-only"
    read_only.mkdir(mode=0o555)
    argv, option = COMMANDS["train"]
    with pytest.raises(SystemExit) as exit_:
        main([*argv, option, str(read_only / "out")])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().endswith(f"argument {option}: {read_only} is not a writable directory")
    assert list(read_only.iterdir()) == []
