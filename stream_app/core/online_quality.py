"""Online model quality from delayed labels: the latest N (score, label) pairs per model version, and
their ROC-AUC / PR-AUC (and precision / recall at a threshold) with the same maths as offline evaluation
(stream_app.core.metrics)."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from stream_app.core.metrics import ThresholdMetrics, pr_auc, precision_recall_at, roc_auc


@dataclass
class OnlineQuality:
    """The latest ``window`` (score, label) pairs per model version, and their ROC-AUC / PR-AUC."""

    window: int = 50_000
    _pairs: dict[str, deque[tuple[float, int]]] = field(default_factory=dict)

    def add(self, model_version: str, score: float, is_fraud: bool) -> None:
        pairs = self._pairs.setdefault(model_version, deque(maxlen=self.window))
        pairs.append((score, 1 if is_fraud else 0))

    def count(self, model_version: str) -> int:
        return len(self._pairs.get(model_version, ()))

    def roc_auc(self, model_version: str) -> float:
        """NaN until both classes have been seen (AUC is undefined before)."""
        y, s = self._arrays(model_version)
        return roc_auc(y, s) if 0 < y.sum() < len(y) else math.nan

    def pr_auc(self, model_version: str) -> float:
        y, s = self._arrays(model_version)
        return pr_auc(y, s) if 0 < y.sum() < len(y) else math.nan

    def at_threshold(self, model_version: str, threshold: float) -> ThresholdMetrics:
        """Precision, recall and the confusion counts when flagging ``score >= threshold``; ValueError
        while no label of the version is held."""
        y, s = self._arrays(model_version)
        return precision_recall_at(y, s, threshold)

    def versions(self) -> list[str]:
        return sorted(self._pairs)

    def _arrays(self, model_version: str) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[type-arg]
        pairs = self._pairs.get(model_version, deque())
        if not pairs:
            return np.zeros(0, dtype=np.int8), np.zeros(0)
        scores, labels = zip(*pairs, strict=True)
        return np.asarray(labels, dtype=np.int8), np.asarray(scores, dtype=np.float64)
