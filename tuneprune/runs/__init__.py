"""The application layer: a trial's specification, its execution, and where trained models come from.

:class:`TrialSpec` is a run config plus the evaluations after training; :func:`execute`
trains it, evaluates and saves (used by ``tuneprune train`` and by the Ray trainable);
:func:`obtain_model` gives a trained model from a file, an MLflow run or fresh training.
"""

from tuneprune.runs.execute import Executed, execute, final_evaluations
from tuneprune.runs.source import model_from_run, obtain_model
from tuneprune.runs.spec import TrialSpec

__all__ = ["Executed", "TrialSpec", "execute", "final_evaluations", "model_from_run", "obtain_model"]
