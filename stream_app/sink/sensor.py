"""What the sink reports as it runs: records consumed, parts written, rows still buffered. The Prometheus
implementation is ``stream_app.adapters.prometheus_metrics.SinkMetrics``; ``NULL_SINK_SENSOR`` ignores
everything."""

from __future__ import annotations

from typing import Protocol


class SinkSensor(Protocol):
    def on_records(self, topic: str, count: int) -> None:
        """``count`` records of ``topic`` were consumed."""
    def on_part_written(self, log: str, rows: int, seconds: float) -> None:
        """A part of ``rows`` rows of ``log`` is durable, ``seconds`` after its write began."""
    def on_open_rows(self, rows: int) -> None:
        """``rows`` rows are buffered in parts not written yet."""


class NullSinkSensor:
    def on_records(self, topic: str, count: int) -> None: ...
    def on_part_written(self, log: str, rows: int, seconds: float) -> None: ...
    def on_open_rows(self, rows: int) -> None: ...


NULL_SINK_SENSOR: SinkSensor = NullSinkSensor()
