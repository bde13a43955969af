"""docs/architecture.md matches the code: each package it names exists, each import it lists is made and allowed; the
README's "What is in it" table has a row for each of its packages."""

from __future__ import annotations

import re
from pathlib import Path

from tests.project.test_architecture import existing_unit, find_cycle, subpackage_graph

PAGE = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"
README = PAGE.parents[1] / "README.md"
ROW = re.compile(r"^\| (\d+) \| `(\w+)` \|([^|]*)\|")
# What tests/project/test_architecture.py forbids the training loop (one run or a pack) to import.
FORBIDDEN = {
    "training": {"cluster", "tracking", "relevance", "search", "runs", "evolution", "stochastic", "reports", "cli"},
}


def drawn() -> dict[str, tuple[int, set[str]]]:
    """``{package: (layer, imports)}`` of the page's table."""
    rows = {}
    for line in PAGE.read_text().splitlines():
        match = ROW.match(line)
        if match:
            rows[match.group(2)] = (int(match.group(1)), set(re.findall(r"`(\w+)`", match.group(3))))
    return rows


def test_every_package_on_the_page_exists_and_every_package_is_on_the_page():
    rows = drawn()
    assert [name for name in rows if not existing_unit(name)] == []
    assert set(subpackage_graph()) - set(rows) == set()


def test_every_import_drawn_is_made_by_the_code():
    graph = subpackage_graph()
    assert {
        name: sorted(imports - graph.get(name, set()))
        for name, (_, imports) in drawn().items()
        if imports - graph.get(name, set())
    } == {}


def test_every_import_drawn_is_allowed_and_points_up_the_layers():
    rows = drawn()
    assert find_cycle({name: imports for name, (_, imports) in rows.items()}) is None
    assert rows["sparsity"][1] <= {"shared"}
    assert rows["training"][1] & FORBIDDEN["training"] == set()
    order = list(rows)  # a package imports only from rows above its own, in no higher layer
    upward = {
        (name, dep)
        for name, (layer, imports) in rows.items()
        for dep in imports
        if rows[dep][0] > layer or order.index(dep) > order.index(name)
    }
    assert upward == set()


def test_every_package_on_the_page_has_a_row_in_the_readme():
    """A reader of the README's "What is in it" table sees every package (shared, output and cluster had no row)."""
    text = README.read_text()
    table = text[text.index("## What is in it") :].split("\n## ", 1)[0]
    listed = re.findall(r"^\| `tuneprune\.(\w+)` \|", table, re.MULTILINE)
    assert sorted(set(drawn()) - set(listed)) == []
