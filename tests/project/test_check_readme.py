"""scripts/check_readme.py on tiny manuals in tmp_path: it passes a good one and fails on each kind of fault."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check_readme.py"
spec = importlib.util.spec_from_file_location("check_readme", SCRIPT)
assert spec is not None
assert spec.loader is not None
check_readme = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_readme)

GOOD_README = """# Demo

See [training](docs/training.md#train-a-model) and [the config](configs/a.yaml).

<!-- runnable -->
```bash
echo 0.95 > written_by_readme.txt
```
"""

GOOD_TRAINING = """# Training

## Train a model

Back to [the README](../README.md#demo), or [searches](searches.md).

<!-- runnable -->
```bash
grep -q 0.95 written_by_readme.txt
echo "val_acc 0.9731"
```
"""

GOOD_SEARCHES = """# Searches

<!-- runnable -->
```bash
test -f configs/a.yaml
```
"""


def manual(root: Path, **pages: str) -> Path:
    """A git working tree with README.md, docs/training.md, docs/searches.md and configs/a.yaml, some pages replaced."""
    files = {
        "README.md": GOOD_README,
        "docs/training.md": GOOD_TRAINING,
        "docs/searches.md": GOOD_SEARCHES,
        "configs/a.yaml": "a: 1\n",
    }
    files.update({name.replace("__", "/").replace("_md", ".md"): text for name, text in pages.items()})
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root


def test_a_good_manual_passes_in_the_stated_order(tmp_path, capsys):
    root = manual(tmp_path)
    assert check_readme.manual_files(root) == [root / "README.md", root / "docs/training.md", root / "docs/searches.md"]
    assert check_readme.main(["--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "0 broken" in out
    assert "4 passed, 0 failed" in out
    assert (
        out.index("README.md: 1 commands")
        < out.index("docs/training.md: 2 commands")
        < out.index("docs/searches.md: 1 commands")
    )


def test_a_page_not_in_the_list_runs_after_the_listed_ones(tmp_path):
    root = manual(tmp_path, docs__aaa_md="# A\n")
    assert check_readme.manual_files(root)[-1] == root / "docs/aaa.md"


@pytest.mark.parametrize(
    ("target", "why"),
    [
        ("docs/missing.md", "no such file"),
        ("docs/training.md#no-such-heading", "no heading #no-such-heading"),
        ("configs/b.yaml", "no such file"),
    ],
)
def test_a_broken_link_fails(tmp_path, capsys, target, why):
    root = manual(tmp_path, README_md=GOOD_README + f"\nAnd [this]({target}).\n")
    assert check_readme.main(["--root", str(root), "--links-only"]) == 1
    out = capsys.readouterr().out
    assert f"[LINK] README.md: {target} ({why}" in out


def test_links_inside_code_are_not_links(tmp_path):
    root = manual(tmp_path, README_md=GOOD_README + "\n```\n[x](nowhere.md)\n```\nand `[y](nowhere.md)`\n")
    assert check_readme.broken_links(root, check_readme.manual_files(root)) == []


@pytest.mark.parametrize(
    ("page", "old", "new", "why"),
    [
        # a failing block: its command exits non-zero
        ("docs__searches_md", "configs/a.yaml", "configs/missing.yaml", "exit code 1"),
        # a cut number: the command exits 0 but prints a number rich cut to fit its column
        ("docs__training_md", 'echo "val_acc 0.9731"', 'echo "val_acc 0.97…"', "a cut number (…)"),
    ],
)
def test_a_failing_block_or_a_cut_number_fails(tmp_path, capsys, page, old, new, why):
    good = {"docs__searches_md": GOOD_SEARCHES, "docs__training_md": GOOD_TRAINING}[page]
    root = manual(tmp_path, **{page: good.replace(old, new)})
    assert check_readme.main(["--root", str(root)]) == 1
    out = capsys.readouterr().out
    assert "[FAIL]" in out
    assert new.split('"')[0].strip() in out
    assert why in out
    assert "3 passed, 1 failed" in out


def test_a_command_run_before_is_not_run_again(tmp_path, capsys):
    once = "<!-- runnable -->\n```bash\necho x >> ran.txt\ntest $(wc -l < ran.txt) = 1\n```\n"
    root = manual(tmp_path, README_md=GOOD_README + once, docs__searches_md=GOOD_SEARCHES + once)
    assert check_readme.main(["--root", str(root)]) == 0
    assert "[same]" in capsys.readouterr().out
