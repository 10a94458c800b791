"""A batch of generated transactions as parallel numpy arrays (population indices, not ids), the common
currency between the behaviour patterns, the history writer and the live producer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import numpy.typing as npt

from stream_app.generator.population import FloatArray, IntArray

CHANNELS: tuple[str, ...] = ("pos", "web", "app")  # index = channel code
POS, WEB, APP = 0, 1, 2


class Pattern(IntEnum):
    """Why a transaction exists. Evaluation-only: never on the wire."""

    NONE = 0  # legitimate (including legitimate look-alikes: travel, big purchases, sprees)
    CARD_TESTING = 1
    ACCOUNT_TAKEOVER = 2
    COMPROMISED_MERCHANT = 3
    FRIENDLY_FRAUD = 4  # a genuine-looking purchase the cardholder disputes: labelled fraud, not learnable
    GIFT_CARD_CASHOUT = 5  # only in a live stream with pattern drift: a fraud history never shows the model

    @property
    def label(self) -> str:
        return self.name.lower()


PATTERN_LABELS: tuple[str, ...] = tuple(p.label for p in Pattern)  # index = pattern code
HISTORY_PATTERNS: tuple[Pattern, ...] = tuple(p for p in Pattern if p is not Pattern.GIFT_CARD_CASHOUT)


@dataclass(frozen=True)
class EventBatch:
    """Generated transactions as parallel arrays, one entry per event."""

    user: IntArray  # index into Population.users
    merchant: IntArray  # index into Population.merchants
    time_us: IntArray  # event time, microseconds since the epoch (UTC)
    amount: FloatArray  # billing currency, rounded to cents, in (0, 1e7]
    channel: IntArray  # index into CHANNELS
    pattern: IntArray  # Pattern value

    def __len__(self) -> int:
        return len(self.user)

    @property
    def is_fraud(self) -> npt.NDArray[np.bool_]:
        flags: npt.NDArray[np.bool_] = self.pattern != Pattern.NONE
        return flags

    def take(self, index: IntArray) -> EventBatch:
        return EventBatch(
            user=self.user[index],
            merchant=self.merchant[index],
            time_us=self.time_us[index],
            amount=self.amount[index],
            channel=self.channel[index],
            pattern=self.pattern[index],
        )

    @staticmethod
    def concat(batches: Sequence[EventBatch]) -> EventBatch:
        return EventBatch(
            user=np.concatenate([b.user for b in batches]).astype(np.int64),
            merchant=np.concatenate([b.merchant for b in batches]).astype(np.int64),
            time_us=np.concatenate([b.time_us for b in batches]).astype(np.int64),
            amount=np.concatenate([b.amount for b in batches]).astype(np.float64),
            channel=np.concatenate([b.channel for b in batches]).astype(np.int64),
            pattern=np.concatenate([b.pattern for b in batches]).astype(np.int64),
        )

    def sorted_by_time(self) -> EventBatch:
        """Stable: equal times keep generation order, so the result is deterministic."""
        return self.take(np.argsort(self.time_us, kind="stable").astype(np.int64))


def cents(amount: FloatArray) -> FloatArray:
    """Round to cents and keep inside the wire contract's (0, 1e7]."""
    return np.clip(np.round(amount, 2), 0.01, 1e7).astype(np.float64)


def full(n: int, value: int) -> IntArray:
    return np.full(n, value, dtype=np.int64)
