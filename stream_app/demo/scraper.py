"""``MetricsScraper``: scrapes the worker's and the sink's ``/metrics`` every ``interval_s`` on a background
thread, the way Prometheus would, into ``Scrapes`` (``metrics_view`` turns them into the summary's numbers).
A scrape that fails is counted and its first error kept, never raised: the demo goes on without it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping

from stream_app.adapters import prometheus_metrics as m
from stream_app.adapters.metrics_reader import Samples, scrape, total
from stream_app.demo.metrics_view import WORKER, Scrape, Scrapes

SCRAPE_EVERY_S = 2.0
TIMEOUT_S = 2.0


class MetricsScraper:
    """Scrapes ``ports`` (``WORKER`` / ``SINK`` -> its port on 127.0.0.1) from ``start`` until
    ``close``; ``t`` of each scrape is seconds since ``origin`` (``time.monotonic``). ``log`` is told of
    each target's first failure."""

    def __init__(self, ports: Mapping[str, int], *, log: Callable[[str], None], interval_s: float = SCRAPE_EVERY_S,
                 fetch: Callable[[int], Samples] | None = None) -> None:
        self.ports = dict(ports)
        self.scrapes = Scrapes(interval_s=interval_s)
        self._log = log
        self._fetch = fetch or (lambda port: scrape(port, timeout_s=TIMEOUT_S))
        self._origin = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, origin: float) -> None:
        """Scrape once now (the baseline the counters' increase is measured from), then every interval."""
        self._origin = origin
        self.scrape_all()
        self._thread = threading.Thread(target=self._run, name="demo-scraper", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.scrapes.interval_s):
            self.scrape_all()

    def scrape_all(self) -> None:
        for target, port in self.ports.items():
            self.scrape_one(target, port)

    def scrape_one(self, target: str, port: int) -> Samples | None:
        t = time.monotonic() - self._origin
        try:
            samples = self._fetch(port)
        except (OSError, ValueError) as exc:
            failed = self.scrapes.failed
            failed[target] = failed.get(target, 0) + 1
            if target not in self.scrapes.first_error:
                self.scrapes.first_error[target] = f"{type(exc).__name__}: {exc}"
                self._log(f"metrics: scraping the {target}'s /metrics on port {port} failed ({exc}); "
                          "counting failures and going on")
            return None
        self.scrapes.of(target).append(Scrape(t, samples))
        return samples

    def close(self, *, settle_s: float = 20.0) -> Scrapes:
        """Stop the thread, then scrape once more: the worker's again until its consumer lag reads 0 (it is
        measured every few seconds, so the last commits show up a little later) or ``settle_s`` passes."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=TIMEOUT_S * len(self.ports) + 5)
        deadline = time.monotonic() + settle_s
        for target, port in self.ports.items():
            samples = self.scrape_one(target, port)
            while target == WORKER and time.monotonic() < deadline and _lagging(samples):
                time.sleep(1.0)
                samples = self.scrape_one(target, port)
        return self.scrapes


def _lagging(samples: Samples | None) -> bool:
    """True unless the scrape has a consumer lag and it is 0 everywhere (no scrape: nothing to wait for)."""
    if samples is None:
        return False
    has_lag = any(name == m.CONSUMER_LAG for name, _ in samples)
    return not has_lag or total(samples, m.CONSUMER_LAG) > 0
