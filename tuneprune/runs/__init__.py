"""The application layer: a trial's specification, its execution, and where trained models come from.

:class:`TrialSpec` is a run config plus the evaluations after training; :func:`execute`
trains it, evaluates and saves (used by ``tuneprune train`` and by the Ray trainable);
:func:`obtain_model` gives a trained model from a file, an MLflow run or fresh training.
"""

from tuneprune.runs.execute import execute
from tuneprune.runs.source import obtain_model
from tuneprune.runs.spec import TrialSpec

__all__ = ["TrialSpec", "execute", "obtain_model"]
