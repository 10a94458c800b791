"""Data quality of served features: a rolling sample of the latest feature vectors a model scored, each
feature's share of missing values in it, and its PSI against the model's reference distributions
(``metrics.histogram_reference``, stored with each registered model). Seasonal features
(``SEASONAL_FEATURES``) get no PSI: see ``drift_psi``."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from stream_app.core.metrics import psi

FloatArray = npt.NDArray[np.float64]
DEFAULT_SAMPLE_ROWS = 10_000
# Features whose distribution follows the time of day by construction (docs/decisions/0025).
SEASONAL_FEATURES: Final = frozenset({"hour_of_day"})


class RollingSample:
    """The latest ``size`` rows (feature vectors, NaN = missing) of a fixed feature list, in a ring buffer
    that whole batches are copied into (no per-row Python work)."""

    def __init__(self, features: Sequence[str], size: int = DEFAULT_SAMPLE_ROWS) -> None:
        if size < 1:
            raise ValueError(f"a rolling sample needs size >= 1, got {size}")
        self.features = tuple(features)
        self._rows = np.full((size, len(self.features)), np.nan, dtype=np.float64)
        self._next = 0  # where the next row goes
        self._filled = 0

    def __len__(self) -> int:
        return self._filled

    def add(self, matrix: FloatArray) -> None:
        """Appends the rows of an (events × features) matrix, dropping the oldest beyond ``size``."""
        if matrix.ndim != 2 or matrix.shape[1] != len(self.features):
            raise ValueError(f"expected (n, {len(self.features)}) features, got {matrix.shape}")
        size = self._rows.shape[0]
        if matrix.shape[0] >= size:
            self._rows[:] = matrix[-size:]
            self._next, self._filled = 0, size
            return
        n = matrix.shape[0]
        end = self._next + n
        if end <= size:
            self._rows[self._next:end] = matrix
        else:
            split = size - self._next
            self._rows[self._next:] = matrix[:split]
            self._rows[:n - split] = matrix[split:]
        self._next = end % size
        self._filled = min(size, self._filled + n)

    def values(self) -> FloatArray:
        """The rows held (oldest first is not guaranteed: order does not matter to the statistics)."""
        return self._rows[:self._filled]


def missing_ratios(sample: RollingSample) -> dict[str, float]:
    """Per feature, the share of missing (NaN) values in the sample; empty when the sample is."""
    rows = sample.values()
    if not len(rows):
        return {}
    shares = np.isnan(rows).mean(axis=0)
    return {name: float(share) for name, share in zip(sample.features, shares.tolist(), strict=True)}


def drift_psi(sample: RollingSample, reference: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """Per feature that has a reference distribution, the PSI of the sample's values against it (NaN for a
    malformed reference); empty when the sample is.

    Seasonal features are left out. The reference spans whole days of training data; the sample, the
    latest rows served, spans minutes to hours, so an hour-of-day histogram of it is the hours the sample
    happens to cover, and its PSI (about 8 on a minute of traffic) says what time it is, not that the
    stream changed. Comparing against the reference restricted to the sample's hours would need per-hour
    references in every model's metadata; a shift in when transactions happen still shows in the window
    counts and the time since the previous transaction, which are compared."""
    rows = sample.values()
    if not len(rows):
        return {}
    out: dict[str, float] = {}
    for j, name in enumerate(sample.features):
        histogram = reference.get(name)
        if histogram is None or name in SEASONAL_FEATURES:
            continue
        try:
            out[name] = psi(histogram, rows[:, j])
        except ValueError:
            out[name] = math.nan
    return out
