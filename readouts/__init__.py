"""Readouts: features from responses, ridge readouts, tasks and training from recordings."""

from .features import trial_features
from .ridge import RidgeClassifier, RidgeReadout
from .tasks import run_task

__all__ = ["trial_features", "RidgeClassifier", "RidgeReadout", "run_task"]
