"""What the batch processor needs from the outside, as protocols. Real adapters live in
stream_app.adapters; unit tests pass fakes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from stream_app.adapters.redis_writes import HashRead, Write
from stream_app.contract import DeadLetter, Prediction
from stream_app.core.engine import WindowState
from stream_app.core.records import Indexed, LabelRow, WindowRow
from stream_app.core.scoring import Scorer
from stream_app.errors import InvalidRecordError


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One consumed Kafka record, exactly as it arrived."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None  # the broker's record timestamp: when the event entered Kafka


class DeadLetterPort(Protocol):
    """Builds dead letters for refused records."""

    def dead_letter(self, record: RawRecord, error: InvalidRecordError) -> DeadLetter:
        """The dead letter that keeps ``record`` with the reason it was refused."""


class PredictionIndexPort(Protocol):
    """The event_id → prediction index the label join reads and consumes, with the transactions partitions'
    watermarks and the labels partitions' committed offsets."""

    def writes(self, predictions: Sequence[Prediction], watermarks: Mapping[int, float] | None = None,
               shadow: Mapping[str, Prediction] | None = None) -> Sequence[Write]:
        """What indexes ``predictions`` (each with its shadow twin in ``shadow``, by event id, if any) and
        moves the ``watermarks``, for the state commit to apply."""
    def remember(self, predictions: Sequence[Prediction], watermarks: Mapping[int, float] | None = None,
                 shadow: Mapping[str, Prediction] | None = None) -> None: ...
    def lookup(self, event_ids: Sequence[str]) -> list[Indexed | None]: ...
    def watermarks(self, partitions: Sequence[int]) -> list[float | None]: ...
    def label_writes(self, event_ids: Sequence[str], offsets: Mapping[int, int]) -> Sequence[Write]:
        """What removes the entries of ``event_ids`` (their labels joined) and records the labels
        partitions' committed ``offsets``, for the label batch's state commit to apply."""
    def committed_offsets(self, partitions: Sequence[int]) -> list[int | None]:
        """The labels partitions' last committed offsets (None: none yet)."""


class StatePort(Protocol):
    """Loads and commits window state (``invalidate`` drops any cached state)."""

    def load(self, user_ids: Sequence[int], merchant_ids: Sequence[int]) -> WindowState: ...
    def commit(self, state: WindowState, also: Sequence[Write] = ()) -> None:
        """Persist ``state`` and the batch's other writes ``also`` in one atomic step, or nothing."""
    def invalidate(self) -> None: ...


class BatchStatePort(StatePort, Protocol):
    """StatePort whose load also runs the batch's other reads, in the same round trip."""

    def load_with(self, user_ids: Sequence[int], merchant_ids: Sequence[int], reads: Sequence[HashRead],
                  ) -> tuple[WindowState, list[list[bytes | None]]]:
        """The window state and one reply per read, in order."""


class ProfileLookupPort(Protocol):
    """A batch's profiles: the reads still to run for them, and how their replies become profiles."""

    @property
    def reads(self) -> Sequence[HashRead]: ...
    def resolve(self, replies: Sequence[Sequence[bytes | None]],
                ) -> tuple[Mapping[int, Mapping[str, Any]], Mapping[int, Mapping[str, Any]]]:
        """User and merchant profiles by id (read-only)."""


class OnlineStorePort(Protocol):
    """Stages the served window rows (written by the state commit) and looks up the batch's profiles."""

    def window_writes(self, user_rows: Sequence[WindowRow], merchant_rows: Sequence[WindowRow],
                      ) -> Sequence[Write]: ...
    def lookup_profiles(self, user_ids: Sequence[int], merchant_ids: Sequence[int]) -> ProfileLookupPort: ...


class ModelPort(Protocol):
    """The scorer to use for the next batch, told what each batch's scorer was given."""

    def current(self) -> Scorer: ...
    def scored(self, features: Sequence[str], matrix: npt.NDArray[np.float64]) -> None:
        """``matrix`` (events × ``features``, the current scorer's) was scored."""


class ShadowPort(Protocol):
    """The shadow model to score the next batch with too, or None when no shadow is set."""

    def current(self) -> Scorer | None: ...


class PublisherPort(Protocol):
    """Publishes predictions, dead letters, joined labels (for the sink's label log) and shadow predictions."""

    async def publish(self, predictions: Sequence[Prediction], dead_letters: Sequence[DeadLetter],
                      labels: Sequence[LabelRow] = (), shadow: Sequence[Prediction] = ()) -> None:
        """Delivered (acknowledged by the broker) on return."""
