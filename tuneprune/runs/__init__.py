"""The application layer: a trial's specification (:class:`TrialSpec`), its execution (:func:`execute`, and
``execute.conclude`` for the Ray trainable) and where trained models come from (:func:`obtain_model`)."""

from tuneprune.runs.execute import execute
from tuneprune.runs.source import obtain_model
from tuneprune.runs.spec import TrialSpec

__all__ = ["TrialSpec", "execute", "obtain_model"]
