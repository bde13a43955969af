"""A study's table (formulas §11): test accuracy mean ± std over seeds per method x target, the best of
each column, a significance mark against the baseline method, the published numbers and the difference.

Accuracies are in %. The std is the sample standard deviation (``ddof = 1``; 0 with one seed). A method differs from
the baseline "beyond noise" when Welch's unequal-variance t-test (``scipy.stats.ttest_ind(equal_var=False)``,
two-sided) of its per-seed accuracies against the baseline's at the same model and target gives ``p < level``; with
fewer than two finished seeds on either side, or no variance on both, there is no test.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from tuneprune.output.plotting import new_figure, save_figure
from tuneprune.output.summaries import write_rows
from tuneprune.reports.document import Report
from tuneprune.reports.source import Source
from tuneprune.reports.trials import SearchData
from tuneprune.search.space import METHOD
from tuneprune.search.study_config import METRIC, MODEL, STUDY_ARTIFACT, TARGET, StudyConfig
from tuneprune.shared.config import validate

BEST_MARK = "*"
SIGNIFICANT_MARK = "†"


@dataclass
class StudyCell:
    """One method at one model and target: the per-seed accuracies (%) and what the table says of them."""

    model: str | None
    method: str
    target: float
    values: list[float] = field(default_factory=list)
    missing: int = 0
    best: bool = False
    p_value: float | None = None
    significant: bool = False
    published: float | None = None

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.values else math.nan

    @property
    def std(self) -> float:
        """Sample std (formulas §11); exactly 0 when the seeds do not vary (:attr:`varies`), not numpy's 1e-15."""
        return float(np.std(self.values, ddof=1)) if self.varies else 0.0 if self.values else math.nan

    @property
    def varies(self) -> bool:
        """Whether the seeds differ at all: equal values have no variance, whatever float rounding makes of their std."""
        return len(set(self.values)) > 1

    @property
    def difference(self) -> float | None:
        """Measured mean minus published, in percentage points."""
        return None if self.published is None or not self.values else self.mean - self.published

    def text(self) -> str:
        """``73.12 ± 0.21*†``; ``-`` when no seed finished."""
        if not self.values:
            return "-"
        marks = (BEST_MARK if self.best else "") + (SIGNIFICANT_MARK if self.significant else "")
        return f"{self.mean:.2f} ± {self.std:.2f}{marks}"


@dataclass
class StudyTable:
    """Every cell of a study, and how to print, save and plot it."""

    study: StudyConfig
    cells: dict[tuple[str | None, str, float], StudyCell]

    @property
    def models(self) -> list[str | None]:
        return list(self.study.models) if self.study.models else [None]

    @property
    def has_published(self) -> bool:
        return any(c.published is not None for c in self.cells.values())

    def header(self) -> list[str]:
        """``model`` (with models), ``method``, then per target its column, and ``published``, ``Δ`` with published numbers."""
        columns = ([MODEL] if self.study.models else []) + [METHOD]
        for t in self.study.targets:
            columns.append(f"{percent(t)} %")
            if self.has_published:
                columns += [f"{percent(t)} % published", f"{percent(t)} % Δ"]
        return columns

    def text_rows(self) -> list[list[str]]:
        """The table as strings, one row per (model, method), in the study's order."""
        rows = []
        for model in self.models:
            for method in self.study.methods:
                row = ([model or ""] if self.study.models else []) + [method]
                for t in self.study.targets:
                    c = self.cells[(model, method, t)]
                    row.append(c.text())
                    if self.has_published:
                        diff = c.difference
                        row += [
                            "" if c.published is None else f"{c.published:.2f}",
                            "" if diff is None else f"{diff:+.2f}",
                        ]
                rows.append(row)
        return rows

    def legend(self) -> str:
        """What the marks mean, the statistics and what the table cannot separate."""
        tested = [c for c in self.cells.values() if c.p_value is not None]
        significant = [c for c in tested if c.significant]
        seeds = len(self.study.seeds)
        short = sum(len(c.values) < seeds for c in self.cells.values())
        fewer = f" ({short} of {len(self.cells)} cells over fewer: the seeds column of study.csv)" if short else ""
        text = (
            f"test accuracy in %, mean ± sample std over {seeds} seeds{fewer}; {BEST_MARK}: best mean of the column; "
            f"{SIGNIFICANT_MARK}: differs from {self.study.baseline_method} beyond noise (Welch's t-test, two-sided, "
            f"p < {self.study.level:g}); {len(significant)} of {len(tested)} comparisons differ"
        )
        if tested and not significant:
            text += "; the seeds' spread does not separate the other methods from the baseline"
        if self.has_published:
            text += "; Δ = measured - published (points)"
        return text

    def records(self) -> list[dict[str, Any]]:
        """One CSV row per cell."""
        return [
            {
                MODEL: c.model or "", METHOD: c.method, "target": c.target, "seeds": len(c.values), "missing": c.missing,
                "mean": c.mean, "std": c.std, "best": c.best, "p_value": c.p_value, "significant": c.significant,
                "published": c.published, "difference": c.difference,
                "values": " ".join(f"{v:.4f}" for v in c.values),
            }
            for c in self.cells.values()
        ]  # fmt: skip

    def markdown(self) -> str:
        """The table as GitHub Markdown, the best of each column in bold, then the legend."""
        header = self.header()
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in self.text_rows():
            bold = (f"**{v}**" if v.endswith((BEST_MARK, BEST_MARK + SIGNIFICANT_MARK)) else v for v in row)
            lines.append("| " + " | ".join(bold) + " |")
        return "\n".join(lines) + f"\n\n{self.legend()}\n"

    def figure(self) -> Any:
        """Accuracy against target sparsity, one line per method with ± std error bars, one panel per model."""
        fig, axes = new_figure(1, len(self.models))
        targets = self.study.targets
        x = range(len(targets))
        for ax, model in zip(axes, self.models, strict=True):
            for method in self.study.methods:
                line = [self.cells[(model, method, t)] for t in targets]
                ax.errorbar(x, [c.mean for c in line], yerr=[c.std for c in line], marker="o", capsize=3, label=method)
                published = [(i, c.published) for i, c in enumerate(line) if c.published is not None]
                if published:
                    color = ax.lines[-1].get_color()
                    ax.plot(*zip(*published, strict=True), "x", color=color, label=f"{method} (published)")
            ax.set_xticks(x, [f"{percent(t)} %" for t in targets])
            ax.set_xlabel("target sparsity")
            ax.set_ylabel(f"{METRIC} (%)")
            ax.set_title(model or self.study.base.get("model", ""), fontsize=10)
            ax.legend(fontsize=8)
        return fig


def percent(target: float) -> str:
    return f"{target * 100:g}"


def study_table(study: StudyConfig, trials: Iterable[dict[str, Any]]) -> StudyTable:
    """The table of a study from its search's trials (``grid``, ``state``, ``metrics`` of each), formulas §11."""
    from scipy.stats import ttest_ind

    published = study.published_cells()
    models = list(study.models) if study.models else [None]
    cells = {
        (model, method, t): StudyCell(model, method, t, published=published.get((model, method, t)))
        for model in models for method in study.methods for t in study.targets
    }  # fmt: skip
    for trial in trials:
        grid = trial["grid"]
        cell = cells.get((grid.get(MODEL) if study.models else None, grid[METHOD], float(grid[TARGET])))
        if cell is None:
            continue
        value = (trial.get("metrics") or {}).get(METRIC)
        if trial["state"] == "COMPLETE" and value is not None and math.isfinite(value):
            cell.values.append(100.0 * value)
        else:
            cell.missing += 1
    for model in models:
        for t in study.targets:
            column = [cells[(model, m, t)] for m in study.methods]
            filled = [c for c in column if c.values]
            top = max((c.mean for c in filled), default=math.nan)
            for c in filled:  # equal means tie: summed in another seed order, the float mean may differ in the last bit
                c.best = math.isclose(c.mean, top, rel_tol=1e-9)
            base = cells[(model, study.baseline_method, t)]
            for c in column:
                if c is base or len(c.values) < 2 or len(base.values) < 2 or not (c.varies or base.varies):
                    continue  # no variance on both sides: scipy would give p = 0 for any difference of the means
                with warnings.catch_warnings():  # one side whose seeds all ended at chance (equal values) is a valid
                    warnings.filterwarnings("ignore", "Precision loss", RuntimeWarning)  # sample: no alarm
                    p = float(ttest_ind(c.values, base.values, equal_var=False).pvalue)
                if math.isfinite(p):
                    c.p_value, c.significant = p, p < study.level
    return StudyTable(study, cells)


def write_study_outputs(table: StudyTable, out: Path) -> list[Path]:
    """``study.csv`` (one row per cell), ``study.md`` (the table and its legend) and ``study.png`` (the plot) in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    markdown = out / "study.md"
    markdown.write_text(table.markdown())
    return [write_rows(table.records(), out / "study.csv"), markdown, save_figure(table.figure(), out / "study.png")]


def logged_study(source: Source) -> StudyConfig | None:
    """The study a search ran (``study.yaml`` on its parent run, logged by ``tuneprune study``); None for a search that
    no study ran, one whose grid sweeps ``methods`` included (docs/searches.md)."""
    run_id = source.parent_run_id
    if all(a.path != STUDY_ARTIFACT for a in source.client.list_artifacts(run_id)):
        return None
    return validate(StudyConfig, yaml.safe_load(source.artifact_text(run_id, STUDY_ARTIFACT)))


def study_section(report: Report, data: SearchData) -> None:
    """The study's table, its legend and its plot in the HTML report of the search that ran it (none for a search)."""
    study = logged_study(data.source)
    if study is None:
        return
    table = study_table(study, ({"grid": t.grid, "state": t.state, "metrics": t.metrics} for t in data.trials))
    report.heading(f"Study: {METRIC} per method and target sparsity")
    header = table.header()
    report.table("study_table", [dict(zip(header, row, strict=True)) for row in table.text_rows()])
    report.text(table.legend())
    report.figure("study", table.figure(), "mean ± std over seeds; x: the published numbers")
    report.table("study_cells", table.records(), "every cell with its per-seed values", inline=False)
