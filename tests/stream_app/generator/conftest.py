"""Small generated worlds shared by the generator tests (generated once per session; read-only)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from stream_app.generator import History, HistoryConfig, generate_history

SMALL = HistoryConfig(days=10, users=3_000, merchants=300, seed=11, start=datetime(2026, 10, 1, tzinfo=UTC))


@pytest.fixture(scope="session")
def small() -> History:
    return generate_history(SMALL)


@pytest.fixture(scope="session")
def month() -> History:
    """The documented default size (30 days, 20k users): volume and per-pattern statistics."""
    return generate_history(HistoryConfig(days=30, users=20_000, merchants=2_000, seed=7))
