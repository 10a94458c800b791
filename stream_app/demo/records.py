"""The few fields the demo reads back from ``predictions``, ``labels`` and ``transactions.dlq``. Plain
JSON parsing rather than the contract's models: the demo only observes, and a record it cannot read
is counted as unreadable instead of stopping the run."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class SeenPrediction:
    """One prediction as observed. ``e2e_ms``: the transaction record's Kafka timestamp (when the producer
    sent it) → the prediction record's Kafka timestamp (when the worker published it), i.e. what a consumer
    of ``predictions`` experiences. ``worker_ms``: the worker's own ``latency_ms`` (transaction record
    timestamp → scored)."""

    event_id: str
    user_id: int
    merchant_id: int
    score: float
    decision: str
    model_version: str
    e2e_ms: float | None
    worker_ms: float | None
    amount: float | None
    user_txn_count_1h: float | None


def _timestamp_ms(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000.0
    except ValueError:
        return None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def sent_ms(body: dict[str, Any]) -> float | None:
    """When the transaction was sent (its record's Kafka timestamp, ms), from the prediction: ``scored_at``
    minus the worker's ``latency_ms``, which it measures from that timestamp. Not ``event_time``: a
    generator may stamp events away from the moment it sends them (``generate live --realistic`` runs
    event time faster than the wall clock)."""
    scored_ms, latency = _timestamp_ms(body.get("scored_at")), _number(body.get("latency_ms"))
    return None if scored_ms is None or latency is None else scored_ms - latency


def parse_prediction(value: bytes | None, kafka_timestamp_ms: int | None) -> SeenPrediction | None:
    """None when the record is not a readable prediction."""
    try:
        body = json.loads(value or b"")
        features = body.get("features") or {}
        sent = sent_ms(body)
        e2e = (kafka_timestamp_ms - sent) if (kafka_timestamp_ms and kafka_timestamp_ms > 0
                                             and sent is not None) else None
        return SeenPrediction(
            event_id=str(body["event_id"]), user_id=int(body["user_id"]), merchant_id=int(body["merchant_id"]),
            score=float(body["score"]), decision=str(body["decision"]), model_version=str(body["model_version"]),
            e2e_ms=e2e, worker_ms=_number(body.get("latency_ms")), amount=_number(features.get("txn_amount")),
            user_txn_count_1h=_number(features.get("user_txn_count_1h")))
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def parse_label(value: bytes | None) -> tuple[str, bool] | None:
    """(event_id, is_fraud), or None when unreadable."""
    try:
        body = json.loads(value or b"")
        if not isinstance(body.get("is_fraud"), bool):
            return None
        return str(body["event_id"]), body["is_fraud"]
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def dead_letter_code(value: bytes | None) -> str:
    """The DeadLetter's ``error.code``; ``unreadable`` when the record itself cannot be read."""
    try:
        return str(json.loads(value or b"")["error"]["code"])
    except (ValueError, TypeError, KeyError):
        return "unreadable"
