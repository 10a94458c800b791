"""Plain rows the worker hands to its stores or gets back from them; no I/O. Defined here, below both
the worker and the adapters, so neither imports the other for them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

WindowRow = tuple[int, datetime, Mapping[str, float]]
"""(entity id, event time, feature name -> value): one served window row, as the stores take it."""


@dataclass(frozen=True, slots=True)
class Indexed:
    """What a delayed label needs from its transaction's prediction (the prediction index's entry)."""

    merchant_id: int
    score: float
    model_version: str
    # the transaction's event time (epoch seconds), for the label delay; None in entries written without it
    event_time: float | None = field(default=None, compare=False)
    # the shadow model's score and version of the same event; None / "" when no shadow scored it
    shadow_score: float | None = None
    shadow_version: str = ""


@dataclass(frozen=True, slots=True)
class LabelRow:
    """A label joined to its prediction: what the label log stores and the online quality counts."""

    event_id: str
    user_id: int
    merchant_id: int
    is_fraud: bool
    label_time: datetime
    score: float
    model_version: str


@dataclass(frozen=True, slots=True)
class TransactionRow:
    """A valid transaction as the transaction log stores it: its fields and where it was read
    (partition, offset), which orders duplicates of an event_id as the worker saw them."""

    event_id: str
    user_id: int
    merchant_id: int
    amount: float
    currency: str
    country: str
    channel: str
    event_time: datetime
    partition: int
    offset: int
