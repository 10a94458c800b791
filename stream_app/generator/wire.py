"""From generated frames to wire records, through the contract's own models, so anything generated is
exactly what a producer would send (and fails loudly if it ever is not)."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd

from stream_app.contract import Label, Transaction, encode, user_key

TRANSACTION_COLUMNS: tuple[str, ...] = tuple(Transaction.model_fields)
LABEL_COLUMNS: tuple[str, ...] = tuple(Label.model_fields)


def rfc3339(times: pd.Series) -> pd.Series:
    """UTC timestamps as the RFC 3339 text the contract requires (explicit 'Z', microseconds)."""
    text: pd.Series = times.dt.tz_convert("UTC").dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return text


def transactions_from_frame(frame: pd.DataFrame) -> Iterator[Transaction]:
    """Validate each row as a wire Transaction; evaluation-only columns are dropped."""
    rows = frame.loc[:, list(TRANSACTION_COLUMNS)].assign(event_time=rfc3339(frame["event_time"]))
    for record in rows.to_dict("records"):
        yield Transaction.model_validate(record)


def labels_from_frame(frame: pd.DataFrame) -> Iterator[Label]:
    rows = frame.loc[:, list(LABEL_COLUMNS)].assign(label_time=rfc3339(frame["label_time"]))
    for record in rows.to_dict("records"):
        yield Label.model_validate(record)


def keyed(records: Iterator[Transaction] | Iterator[Label]) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) pairs as they go on ``transactions`` / ``labels``: key = user_key(user_id)."""
    for record in records:
        yield user_key(record.user_id), encode(record)
