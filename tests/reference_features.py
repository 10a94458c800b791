"""Brute-force recomputation of served features from raw events, for correctness tests.

Deliberately naive (scans all history for each event) and written from the documented semantics, not
from the window core: a user window for transaction e at time t covers e and every transaction of the
same user processed before it with time in (t - W, t]; a merchant window is served as of t - LAG and
covers every transaction of the merchant (labels: every label) with time in (t - LAG - W, t - LAG].
Arrival order is by time, labels before transactions at the same instant, then by position in the log."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pandas as pd

from stream_app.core.window_spec import ALL_WINDOWS, MERCHANT_LAG_S, Entity, Function, Source, WindowSpec


def _secs(series: pd.Series) -> np.ndarray:
    return pd.to_datetime(series, utc=True).dt.as_unit("us").astype("int64").to_numpy() / 1e6


class Reference:
    def __init__(self, transactions: pd.DataFrame, labels: pd.DataFrame) -> None:
        self.txn = transactions.reset_index(drop=True)
        self.t = _secs(self.txn["event_time"])
        # arrival rank of each transaction: sort by (time, index)
        order = np.lexsort((np.arange(len(self.t)), self.t))
        self.rank = np.empty(len(order), dtype=np.int64)
        self.rank[order] = np.arange(len(order))
        self.by_user: dict[int, list[int]] = defaultdict(list)
        self.by_merchant: dict[int, list[int]] = defaultdict(list)
        for i, (u, m) in enumerate(zip(self.txn["user_id"], self.txn["merchant_id"], strict=True)):
            self.by_user[int(u)].append(i)
            self.by_merchant[int(m)].append(i)
        merchant_of = dict(zip(self.txn["event_id"], self.txn["merchant_id"], strict=True))
        self.labels_by_merchant: dict[int, list[tuple[float, float]]] = defaultdict(list)
        for eid, fraud, lt in zip(labels["event_id"], labels["is_fraud"], _secs(labels["label_time"]), strict=True):
            if eid in merchant_of:
                self.labels_by_merchant[int(merchant_of[eid])].append((float(lt), 1.0 if fraud else 0.0))

    def _earlier(self, pool: list[int], i: int) -> list[int]:
        return [j for j in pool if self.rank[j] <= self.rank[i]]

    def features(self, i: int) -> dict[str, float]:
        """Every window feature served for transaction row i."""
        row = self.txn.iloc[i]
        t = self.t[i]
        out: dict[str, float] = {}
        as_of = t - MERCHANT_LAG_S
        for spec in ALL_WINDOWS:
            if spec.source is Source.LABEL:
                labels = [v for lt, v in self.labels_by_merchant.get(int(row["merchant_id"]), [])
                          if as_of - spec.window_s < lt <= as_of]
                out[spec.name] = _label_value(spec, labels)
            elif spec.entity is Entity.MERCHANT:
                assert spec.function is Function.COUNT, "only counts are served per merchant"
                out[spec.name] = float(sum(1 for j in self.by_merchant[int(row["merchant_id"])]
                                           if as_of - spec.window_s < self.t[j] <= as_of))
            else:
                earlier = self._earlier(self.by_user[int(row["user_id"])], i)
                out[spec.name] = self._txn_value(spec, earlier, i, t)
        return out

    def _txn_value(self, spec: WindowSpec, earlier: list[int], i: int, t: float) -> float:
        if spec.function is Function.SINCE_PREVIOUS:
            previous = [self.t[j] for j in earlier if j != i and self.t[j] <= t]
            return t - max(previous) if previous else math.nan
        inside = [j for j in earlier if t - spec.window_s < self.t[j] <= t]
        if spec.function is Function.COUNT:
            return float(len(inside))
        values = [float(self.txn.at[j, spec.field]) for j in inside]  # type: ignore[index, arg-type]
        if spec.function is Function.SUM:
            return math.fsum(values)
        if spec.function is Function.MEAN:
            return math.fsum(values) / len(values)
        if spec.function is Function.MAX:
            return max(values)
        if spec.function is Function.DISTINCT:
            return float(len(set(values)))
        raise AssertionError(spec)


def _label_value(spec: WindowSpec, labels: list[float]) -> float:
    if spec.function is Function.COUNT:
        return float(len(labels))
    if spec.function is Function.RATE:
        return sum(labels) / len(labels) if labels else 0.0
    raise AssertionError(spec)


def same(a: float, b: float) -> bool:
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)
