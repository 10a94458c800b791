"""How a shadow model compares with the champion on the same events: the correlation of their scores and
the share of events on which their decisions agree, over the latest N events scored by both."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def score_correlation(champion: FloatArray, shadow: FloatArray) -> float:
    """Pearson correlation of the two models' scores of the same events; NaN with fewer than two events or
    when either model's scores do not vary (undefined)."""
    if len(champion) != len(shadow):
        raise ValueError(f"{len(champion)} champion scores but {len(shadow)} shadow scores")
    if len(champion) < 2 or np.ptp(champion) == 0 or np.ptp(shadow) == 0:
        return math.nan
    return float(np.corrcoef(champion, shadow)[0, 1])


def decision_agreement(champion: npt.NDArray[np.bool_], shadow: npt.NDArray[np.bool_]) -> float:
    """The share of events both models decide alike (True = decline); NaN with no events."""
    if len(champion) != len(shadow):
        raise ValueError(f"{len(champion)} champion decisions but {len(shadow)} shadow decisions")
    return float(np.mean(champion == shadow)) if len(champion) else math.nan


@dataclass
class ShadowComparison:
    """The latest ``window`` events scored by the champion and by one shadow version; a new shadow version
    starts afresh."""

    window: int = 50_000
    shadow_version: str = ""
    _pairs: deque[tuple[float, float, bool, bool]] = field(init=False)

    def __post_init__(self) -> None:
        self._pairs = deque(maxlen=self.window)

    def add(self, shadow_version: str, champion: FloatArray, shadow: FloatArray, champion_threshold: float,
            shadow_threshold: float) -> None:
        """One batch's scores from both models (same events, same order); each declines at
        ``score >= threshold``."""
        if shadow_version != self.shadow_version:
            self.shadow_version = shadow_version
            self._pairs.clear()
        self._pairs.extend(zip(champion.tolist(), shadow.tolist(), (champion >= champion_threshold).tolist(),
                               (shadow >= shadow_threshold).tolist(), strict=True))

    def count(self) -> int:
        return len(self._pairs)

    def correlation(self) -> float:
        champion, shadow, _, _ = self._arrays()
        return score_correlation(champion, shadow)

    def agreement(self) -> float:
        _, _, champion, shadow = self._arrays()
        return decision_agreement(champion, shadow)

    def _arrays(self) -> tuple[FloatArray, FloatArray, npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
        pairs = tuple(self._pairs)  # one copy: a batch may be added meanwhile (another thread)
        columns = list(zip(*pairs, strict=True)) if pairs else [(), (), (), ()]
        return (np.asarray(columns[0], dtype=np.float64), np.asarray(columns[1], dtype=np.float64),
                np.asarray(columns[2], dtype=np.bool_), np.asarray(columns[3], dtype=np.bool_))
