"""Readouts: features from responses and ridge readouts (scikit-learn estimators)."""

from .features import trial_features
from .ridge import RidgeClassifier, RidgeReadout

__all__ = ["trial_features", "RidgeClassifier", "RidgeReadout"]
