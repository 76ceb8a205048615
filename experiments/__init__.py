"""Experiments: tasks on substrates, time-series tasks, characterisation, training from recordings, reports.

They sit above ``readouts`` (which stay scikit-learn estimators and feature functions) and use every
layer below: substrates, protocols and their recordings.
"""

from .tasks import run_task

__all__ = ["run_task"]
