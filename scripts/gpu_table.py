"""One Markdown table of ratios from the parts of ``scripts/gpu_check.sh``.

    python scripts/gpu_table.py DIR --device cuda --models resnet20x2,resnet18 --packs 8,16 [--seconds N]

DIR holds what the parts wrote: ``parts.tsv`` (part, exit status or ``skipped``, seconds, limit),
``tests.xml`` (pytest's JUnit report) and the benchmarks' ``--json`` files ``sparse.json``,
``train.json`` and ``pack-K.json``. Per model and for the rows of ``--device``, the table gives
the dense step time and the ratios

- sparse / dense training step time (bench_sparse, medians),
- ``tuneprune.training.train`` dense and sparse / the plain PyTorch loop, images per second (bench_train),
- packed / sequential images per second of K trials, per K of ``--packs`` (bench_pack),
- launches of K solo steps / launches of one packed (vmap) step of K members (bench_pack),

with "—" where a part measured nothing (failed or out of time). Above it a line names the device,
torch and the date; below it the tests' counts and each part's result. The text is printed and
written to ``DIR/table.md``; the exit status is 1 when a part did not end well, else 0.
"""

from __future__ import annotations

import argparse
import datetime
import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench_arguments import positive_ints

MISSING = "—"
Row = dict[str, Any]


def load(path: Path) -> dict[str, Any]:
    """A benchmark's ``--json`` record (bench_common.FigureFile); empty when the file is absent."""
    return json.loads(path.read_text()) if path.is_file() else {}


def rows_of(record: dict[str, Any], table: str, device: str) -> list[Row]:
    return [row for row in record.get("tables", {}).get(table, []) if row["device"] == device]


def cell(rows: list[Row], model: str, value: Callable[[Row], float], digits: int, **match: object) -> str:
    """``value`` of the row of ``model`` (and ``match``), printed with ``digits`` decimals; MISSING when there is none."""
    for row in rows:
        if row["model"] == model and all(row[key] == want for key, want in match.items()):
            return f"{value(row):.{digits}f}"
    return MISSING


def tests_summary(path: Path) -> str:
    if not path.is_file():
        return "no report"
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    count = {key: sum(int(s.get(key, 0)) for s in suites) for key in ("tests", "failures", "errors", "skipped")}
    passed = count["tests"] - count["failures"] - count["errors"] - count["skipped"]
    return f"{passed} passed, {count['failures'] + count['errors']} failed, {count['skipped']} skipped"


def part_results(path: Path) -> list[tuple[str, str, str]]:
    """``(part, result, seconds)`` of each line of parts.tsv; result is ok, failed, timed out or skipped."""
    results = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        name, status, seconds, limit = line.split("\t")
        if status == "skipped":
            result = "skipped: no time left"
        elif status == "0":
            result = "ok"
        elif status in ("124", "137"):
            result = f"timed out at its limit of {limit} s"
        else:
            result = f"failed (exit {status})"
        results.append((name, result, seconds))
    return results


def render(directory: Path, device: str, models: list[str], packs: list[int], seconds: int | None) -> tuple[str, bool]:
    """The Markdown text and whether every part ended well."""
    sparse_record, train_record = load(directory / "sparse.json"), load(directory / "train.json")
    pack_records = [load(directory / f"pack-{k}.json") for k in packs]
    sparse, train = rows_of(sparse_record, "steps", device), rows_of(train_record, "epochs", device)
    throughput = [row for record in pack_records for row in rows_of(record, "throughput", device)]
    launches = [row for record in pack_records for row in rows_of(record, "launches", device)]
    records = [r for r in (sparse_record, train_record, *pack_records) if r]
    name = next(
        (r["devices"][device] for r in records if device in r["devices"]), "device unknown (no benchmark finished)"
    )
    torch_version = records[0]["torch"] if records else "?"
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    took = f", {seconds} s in all" if seconds is not None else ""

    columns = ["model", "dense step ms", "sparse/dense step", "train dense/plain", "train sparse/plain"]
    columns += [f"packed/sequential K={k}" for k in packs] + [f"launches K solo/packed K={k}" for k in packs]
    lines = [
        f"**GPU figures** ({device}): {name}, torch {torch_version}, {when}, scripts/gpu_check.sh{took}",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
    ]
    for model in models:
        cells = [
            model,
            cell(sparse, model, lambda r: r["dense_ms"], 2),
            cell(sparse, model, lambda r: r["sparse_ms"] / r["dense_ms"], 2),
            cell(train, model, lambda r: r["dense"] / r["plain"], 2),
            cell(train, model, lambda r: r["sparse"] / r["plain"], 2),
        ]
        cells += [cell(throughput, model, lambda r: r["packed"] / r["sequential"], 2, k=k) for k in packs]
        cells += [cell(launches, model, lambda r: r["solo_times_k"] / r["packed_vmap"], 1, k=k) for k in packs]
        lines.append("| " + " | ".join(cells) + " |")
    results = part_results(directory / "parts.tsv")
    lines += ["", f"Tests (tests/sparsity/test_no_host_sync.py): {tests_summary(directory / 'tests.xml')}.", ""]
    lines += ["| part | result | seconds |", "|---|---|---|"]
    lines += [f"| {part} | {result} | {took_s} |" for part, result, took_s in results]
    return "\n".join(lines) + "\n", all(result == "ok" for _, result, _ in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path, help="the folder the parts of gpu_check.sh wrote to")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--models", required=True, help="comma-separated registry names, one row each")
    parser.add_argument(
        "--packs", type=positive_ints, default="8,16", help="comma-separated K of the pack-K.json files"
    )
    parser.add_argument("--seconds", type=int, help="the whole run's time, for the header")
    args = parser.parse_args()
    text, ok = render(args.directory, args.device, args.models.split(","), args.packs, args.seconds)
    (args.directory / "table.md").write_text(text)
    print(text, end="")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
