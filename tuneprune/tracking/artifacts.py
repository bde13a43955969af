"""Downloads of MLflow run artifacts, with one-line errors for the terminal."""

from __future__ import annotations

from pathlib import Path

from tuneprune.shared.config import ConfigError


def download_artifact(label: str, tracking_uri: str, run_id: str, path: str, dst: Path) -> Path:
    """Download artifact ``path`` of run ``run_id`` into ``dst`` and return its local path.

    A missing run, artifact or store raises a one-line :class:`ConfigError` starting with
    ``label`` (what the user named: ``--from-run ID``, ``source = 'NAME'``).
    """
    import mlflow.artifacts

    try:
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=path, dst_path=str(dst), tracking_uri=tracking_uri
        )
    except Exception as err:
        reason = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
        raise ConfigError(f"{label}: run {run_id} has no {path} artifact in {tracking_uri} ({reason})") from None
    return Path(local)
