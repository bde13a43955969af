"""A ``--name`` names a folder under the results directory: one with other characters is refused before any work."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuneprune.cli import main

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = {
    "search": ROOT / "search_spaces/digits_demo.yaml",
    "relevance": ROOT / "configs/relevance_digits.yaml",  # on the old code it trained, then wrote runs/a/b
}


@pytest.mark.parametrize("name", ["a/b", ".", ".."])  # '..' put the results beside the results directory
@pytest.mark.parametrize("command", COMMANDS)
def test_a_name_with_a_slash_or_of_dots_alone_exits_2_naming_the_option(command, name, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main([command, str(COMMANDS[command]), "--no-progress", "--name", name])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    allowed = "letters, digits, '_', '.' and '-' only, not dots alone"
    assert err == f"tuneprune {command}: error: argument --name: {name!r}: {allowed}"
    assert list(tmp_path.iterdir()) == []  # no store, no results
