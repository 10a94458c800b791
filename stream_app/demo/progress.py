"""The lines the demo prints while streaming: one per second (rates, backlog, labels, running ROC-AUC)
and, every few seconds, a couple of sample predictions. Pure formatting, so it is easy to keep tidy."""

from __future__ import annotations

from collections.abc import Sequence

from stream_app.demo.records import SeenPrediction
from stream_app.demo.summary import Sample


def backlog(sample: Sample) -> int:
    """Transactions produced and not yet answered (by a prediction or a dead letter): the consumer lag
    in events, end to end."""
    return sample.produced - sample.scored - sample.dead_letters


def format_tick(now: Sample, before: Sample, *, joined: int, auc: float | None, phase: str) -> str:
    dt = max(now.t - before.t, 1e-9)
    auc_text = f"{auc:.3f}" if auc is not None else "  n/a"
    return (f"  {phase:<6} {now.t:5.0f}s | in {(now.produced - before.produced) / dt:5.0f}/s {now.produced:>7,} | "
            f"scored {(now.scored - before.scored) / dt:5.0f}/s {now.scored:>7,} | "
            f"dlq {now.dead_letters:>5,} | backlog {backlog(now):>6,} | labels {now.labels:>7,} "
            f"(joined {joined:>6,}) | ROC-AUC {auc_text}")


def choose_samples(recent: Sequence[SeenPrediction], k: int = 2) -> list[SeenPrediction]:
    """The riskiest recent prediction, then the newest ones: a decline is more telling than k approvals."""
    if not recent:
        return []
    riskiest = max(recent, key=lambda p: p.score)
    rest = [p for p in reversed(recent) if p is not riskiest][: k - 1]
    return [riskiest, *rest][:k]


def format_prediction(p: SeenPrediction) -> str:
    amount = f"{p.amount:,.2f}" if p.amount is not None else "?"
    count = f"{p.user_txn_count_1h:.0f}" if p.user_txn_count_1h is not None else "?"
    e2e = f"{p.e2e_ms:,.0f} ms" if p.e2e_ms is not None else "?"
    return (f"           {p.event_id:<26} user {p.user_id:>7} merchant {p.merchant_id:>6} amount {amount:>9} "
            f"txns/1h {count:>3} -> score {p.score:.3f} {p.decision:<7} ({p.model_version}, {e2e})")
