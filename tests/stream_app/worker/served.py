"""What the worker served, read back from its output topic, and checks against recomputations."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from stream_app.contract import Label, Transaction
from stream_app.core.window_spec import ALL_WINDOWS
from tests.reference_features import Reference, same

Record = tuple[bytes | None, bytes | None, int, int]
_VOLATILE = ("scored_at", "latency_ms")  # wall-clock fields: a duplicate may differ there only


def predictions_by_event(records: Iterable[Record]) -> dict[str, dict[str, Any]]:
    """One prediction per event_id; asserts every duplicate equals the first (but for wall-clock fields)."""
    first: dict[str, dict[str, Any]] = {}
    variants: dict[str, set[str]] = defaultdict(set)
    for _, value, _, _ in records:
        body = json.loads(value or b"{}")
        first.setdefault(body["event_id"], body)
        variants[body["event_id"]].add(json.dumps({k: v for k, v in body.items() if k not in _VOLATILE},
                                                  sort_keys=True))
    differing = [e for e, v in variants.items() if len(v) > 1]
    assert not differing, f"{len(differing)} duplicate predictions differ from the first, e.g. {differing[:3]}: " \
        + difference([json.loads(v) for v in variants[differing[0]]]) if differing else ""
    return first


def difference(bodies: list[dict[str, Any]]) -> str:
    a, b = bodies[0], bodies[1]
    fields = {k: (a[k], b[k]) for k in a if k != "features" and a[k] != b.get(k)}
    features = {k: (a["features"][k], b["features"].get(k)) for k in a["features"]
                if a["features"][k] != b["features"].get(k)}
    return f"{fields} {features}"


def frames(transactions: Sequence[Transaction], labels: Sequence[Label] = ()) -> tuple[pd.DataFrame, pd.DataFrame]:
    txn = pd.DataFrame({
        "event_id": [t.event_id for t in transactions], "user_id": [t.user_id for t in transactions],
        "merchant_id": [t.merchant_id for t in transactions], "amount": [t.amount for t in transactions],
        "event_time": pd.to_datetime([t.event_time for t in transactions], utc=True)})
    lab = pd.DataFrame({
        "event_id": [x.event_id for x in labels], "is_fraud": [x.is_fraud for x in labels],
        "label_time": pd.to_datetime([x.label_time for x in labels], utc=True)})
    return txn, lab


def _value(v: float | None) -> float:
    return math.nan if v is None else float(v)


def window_mismatches(transactions: Sequence[Transaction], served: Mapping[str, Mapping[str, Any]],
                      labels: Sequence[Label] = ()) -> list[str]:
    """Every window feature of every served event vs a brute-force recomputation from the raw events."""
    reference = Reference(*frames(transactions, labels))
    out: list[str] = []
    for i, txn in enumerate(transactions):
        expected = reference.features(i)
        got = served[txn.event_id]["features"]
        out.extend(f"{txn.event_id} {spec.name}: served {got[spec.name]} expected {expected[spec.name]}"
                   for spec in ALL_WINDOWS if not same(expected[spec.name], _value(got[spec.name])))
    return out
