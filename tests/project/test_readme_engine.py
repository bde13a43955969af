"""The manual's Python snippets for one's own code run as written and do what they say: docs/training.md's "Use the
engine in your own training loop" and docs/packing.md's "In your own code" (a pack and its checkpoints)."""

import re
from pathlib import Path

import torch

from tuneprune.sparsity import prunable_sparsity

DOCS = Path(__file__).resolve().parents[2] / "docs"
README = DOCS / "training.md"
HEADING = "## Use the engine in your own training loop"
PACKING = DOCS / "packing.md"
PACKING_HEADING = "## In your own code"
# The packing snippets train 3 members for 2 epochs on all of digits; on 64 images an epoch is one batch: every step of
# theirs still runs (a pack, a stop, checkpoints, a resumed pack), in seconds.
FEWER_SAMPLES = ('"epochs": 2,', '"epochs": 2, "train_samples": 64,')


def python_snippets(page: Path, heading: str) -> list[str]:
    """The ``python`` blocks of ``page`` from ``heading`` to the next heading of its level, in order."""
    text = page.read_text()
    section = text[text.index(heading) + len(heading) :]
    level = heading.split(" ", 1)[0]
    section = re.split(rf"^{level} ", section, flags=re.MULTILINE)[0]
    snippets = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    assert snippets, f"no python block under {heading!r} in {page.name}"
    return snippets


def engine_snippet() -> str:
    return python_snippets(README, HEADING)[0]


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


def test_the_packing_snippets_train_a_pack_stop_a_member_and_resume_members_from_their_checkpoints(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)  # the snippets write ckpt/K.pt in the working directory
    train, resume = python_snippets(PACKING, PACKING_HEADING)
    assert FEWER_SAMPLES[0] in train, "the snippet's config changed: update FEWER_SAMPLES"
    namespace: dict = {}
    exec(compile(train.replace(*FEWER_SAMPLES), str(PACKING), "exec"), namespace)
    alone = namespace["members"]
    assert [(m.status, len(m.history)) for m in alone] == [("finished", 2), ("stopped", 1), ("finished", 2)]
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 1 + 3  # the members' statuses, then one val_acc per member of the epoch's callback

    packed = namespace["train_packed"](namespace["configs"])  # the three trained unstopped, for the resumed ones
    exec(compile(resume, str(PACKING), "exec"), namespace)
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["0.pt", "1.pt", "2.pt"]
    resumed = namespace["members"]
    assert [m.config.seed for m in resumed] == [2, 0]
    for member, unstopped in zip(resumed, (packed[2], packed[0]), strict=True):  # bit for bit on the CPU
        assert member.status == "finished"
        assert [(h["train_loss"], h["val_acc"]) for h in member.history] == [
            (h["train_loss"], h["val_acc"]) for h in unstopped.history
        ]
