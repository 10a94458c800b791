"""Feature vectors and scores: assemble each event's features in the model's order and score a batch.

``Scorer`` is the one scoring path: the worker scores micro-batches with ``score``; training, promotion
and the golden-set evaluation score frames with ``score_frame``, which builds the same float64 matrix
(NaN = missing, as XGBoost expects) and calls ``score``. Every tree of the booster counts: training
registers the booster cut at its best iteration, so no iteration range is needed here."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
import xgboost

from stream_app.core.decision import Decision
from stream_app.errors import DataValidationError

FeatureValue = float | int | bool | None


def assemble(features: Sequence[str], parts: Sequence[Sequence[Mapping[str, FeatureValue]]]) -> npt.NDArray[np.float64]:
    """A (events × features) float64 matrix. ``parts`` holds, per event, the mappings its features come
    from (window rows, profiles, request features); a name absent from all of them, or None, is NaN.
    A feature supplied by two parts of one event is a definition bug: ValueError."""
    matrix = np.full((len(parts), len(features)), np.nan, dtype=np.float64)
    index = {name: j for j, name in enumerate(features)}
    for i, sources in enumerate(parts):
        row = matrix[i]
        seen: set[int] = set()
        for source in sources:
            for name, value in source.items():
                j = index.get(name)
                if j is None:
                    continue
                if j in seen:
                    raise ValueError(f"feature {name!r} is supplied twice for event {i}")
                seen.add(j)
                if value is not None:
                    row[j] = float(value)
    return matrix


def as_features(features: Sequence[str], vector: npt.NDArray[np.float64]) -> dict[str, float | None]:
    """One assembled row as {name: value}, NaN as None (JSON has no NaN) — what a prediction carries."""
    return {name: (None if math.isnan(v) else float(v)) for name, v in zip(features, vector.tolist(), strict=True)}


@dataclass(frozen=True)
class Scorer:
    """A model ready to score: the booster, its ordered inputs, its threshold and its version."""

    booster: xgboost.Booster
    features: tuple[str, ...]
    threshold: float
    version: str

    def score(self, matrix: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        if matrix.ndim != 2 or matrix.shape[1] != len(self.features):
            raise ValueError(f"expected (n, {len(self.features)}) features, got {matrix.shape}")
        if matrix.shape[0] == 0:
            return np.empty(0, dtype=np.float64)
        scores = self.booster.inplace_predict(matrix, missing=np.nan, validate_features=False)
        return np.asarray(scores, dtype=np.float64)

    def score_frame(self, frame: pd.DataFrame) -> npt.NDArray[np.float64]:
        """Scores for a frame holding (at least) the model's features, in any column order; missing
        values (None, NaN) are NaN. DataValidationError names the features the frame lacks."""
        missing = [name for name in self.features if name not in frame.columns]
        if missing:
            raise DataValidationError(f"frame lacks features of model {self.version}: {missing}",
                                      {"missing": missing})
        return self.score(frame[list(self.features)].astype(np.float64).to_numpy())

    def decide(self, scores: npt.NDArray[np.float64]) -> list[Decision]:
        return ["decline" if s >= self.threshold else "approve" for s in scores.tolist()]
