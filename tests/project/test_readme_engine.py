"""The manual's "Use the engine in your own training loop" snippet (docs/training.md) runs as written and does what it says."""

import re
from pathlib import Path

import torch

from tuneprune.sparsity import prunable_sparsity

README = Path(__file__).resolve().parents[2] / "docs" / "training.md"
HEADING = "## Use the engine in your own training loop"


def engine_snippet() -> str:
    text = README.read_text()
    section = text[text.index(HEADING) :]
    snippet = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert snippet is not None, f"no python block under {HEADING!r}"
    return snippet.group(1)


def test_the_snippet_is_under_ten_lines_after_its_imports():
    lines = [
        line for line in engine_snippet().splitlines() if line.strip() and not line.startswith(("import ", "from "))
    ]
    assert len(lines) < 10


def test_the_readme_snippet_trains_to_the_target_and_finalizes(capsys):
    torch.manual_seed(0)
    namespace: dict = {}
    exec(compile(engine_snippet(), str(README), "exec"), namespace)
    model = namespace["model"]
    assert not any("parametriz" in name for name, _ in model.named_modules())
    assert abs(prunable_sparsity(model) - 0.9) < 1e-3  # the cubic schedule reached S_f = 0.9 at step 50
    printed = capsys.readouterr().out
    assert "'sparsity_k': 0.9," in printed
    assert "mean_mask_stability" in printed
