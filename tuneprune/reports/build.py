"""``tuneprune report``: write the report of a search or an evolution and log it to the parent MLflow run (formulas §8)."""

from __future__ import annotations

from pathlib import Path

from tuneprune.output.progress import say
from tuneprune.reports.document import Report
from tuneprune.reports.source import Source


def build_report(source: Source, out: Path | None = None) -> Path:
    """Write ``report.html`` with its PNG, CSV and YAML files into ``out`` (default ``RESULTS/report``), log them; the page's path."""
    from tuneprune.reports.evolution import evolution_report
    from tuneprune.reports.search import search_report
    from tuneprune.reports.trials import load_search

    source.check_tracking()
    say(f"writing the report of {source.kind} {source.name} from {source.tracking_uri} ...")
    report = Report(f"tuneprune {source.kind} {source.name}", out or source.results_dir / "report")
    report.text(
        f"{source.kind} {source.name}: MLflow parent run {source.parent_run_id} in {source.tracking_uri}; "
        f"results in {source.results_dir}."
    )
    if source.kind == "search":
        search_report(report, load_search(source))
    else:
        evolution_report(report, source)
    html = report.write_html()
    for path in report.files:
        source.client.log_artifact(source.parent_run_id, str(path), "report")
    return html
