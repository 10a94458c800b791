#!/usr/bin/env python
"""Restart to first prediction: ``python -m stream_app worker`` is SIGKILLed, an event is produced while it
is down, and the worker is restarted under the same settings; the figure is the time from the restart to
that event's prediction on ``predictions``. Measured with static group membership (the default instance
id: the restarted worker takes its partitions back at once) and without (``instance_id=""``: the group
waits for the killed member's session, ``session_timeout_s``, to expire).

Needs Kafka and Redis from the environment (bench/run.sh starts them). Writes bench/results/restart.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from harness import log, prepare_world, start_child, topics_named, with_run, write_result

from stream_app.adapters.kafka_admin import ensure_topics
from stream_app.contract import user_key
from stream_app.settings import REPO_ROOT, Settings, settings_env


def _event(event_id: str, user: int) -> bytes:
    return json.dumps({"event_id": event_id, "user_id": user, "merchant_id": 1, "amount": 20.0, "currency": "EUR",
                       "country": "FR", "channel": "web",
                       "event_time": datetime.now(UTC).isoformat().replace("+00:00", "Z")}).encode()


def _produce(settings: Settings, event_id: str, user: int) -> None:
    producer = Producer(settings.kafka.confluent())
    producer.produce(settings.topics.transactions.name, key=user_key(user), value=_event(event_id, user))
    if producer.flush(30):
        raise RuntimeError("producing the marker event failed")


def _wait_for(reader: Consumer, event_id: str, timeout_s: float) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        msg = reader.poll(0.05)
        if msg is not None and msg.error() is None and msg.key() == event_id.encode():
            return time.monotonic()
    raise TimeoutError(f"no prediction for {event_id} within {timeout_s:.0f} s")


def measure(settings: Settings, root: Path, name: str, restarts: int) -> list[float]:
    """Seconds from each restart (after a SIGKILL) to the first prediction of an event produced meanwhile."""
    env = settings_env(settings)
    partitions = settings.topics.predictions.partitions
    reader = Consumer({**settings.kafka.confluent(), "group.id": f"bench-restart-reader-{uuid.uuid4().hex}",
                       "enable.auto.commit": False})
    reader.assign([TopicPartition(settings.topics.predictions.name, p, OFFSET_BEGINNING) for p in range(partitions)])
    figures: list[float] = []
    try:
        worker = start_child(env, root / "logs" / f"{name}.log", REPO_ROOT)
        _produce(settings, f"{name}-warm", 1)
        _wait_for(reader, f"{name}-warm", 180)
        for i in range(restarts):
            worker.kill()
            _produce(settings, f"{name}-{i}", 2 + i)
            started = time.monotonic()
            worker = start_child(env, root / "logs" / f"{name}.log", REPO_ROOT)
            figures.append(round(_wait_for(reader, f"{name}-{i}", 180) - started, 2))
            log(f"{name}: restart {i + 1} answered after {figures[-1]} s")
        worker.stop()
    finally:
        reader.close()
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--restarts", type=int, default=3, help="SIGKILL + restart cycles per mode")
    args = parser.parse_args()
    run_id = uuid.uuid4().hex[:6]
    root = REPO_ROOT / ".run" / "bench" / f"restart-{run_id}"
    (root / "logs").mkdir(parents=True, exist_ok=True)
    world = prepare_world(root / "world", f"bench_restart_{run_id}", users=2_000, merchants=200, days=1, seed=11,
                          train_rows=5_000, rounds=20)
    medians: dict[str, float] = {}
    out: dict[str, object] = {"measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
                              "command": " ".join([".venv/bin/python bench/bench_restart.py", *sys.argv[1:]]),
                              "median_s": medians}
    modes: tuple[tuple[str, dict[str, str]], ...] = (("static", {}), ("dynamic", {"instance_id": ""}))
    for mode, knobs in modes:
        settings = with_run(world.settings, app_id=f"restart-{mode}-{run_id}",
                            topics=topics_named(f"restart-{mode}-{run_id}"), worker=dict(knobs))
        ensure_topics(settings.kafka, settings.topics.all())
        figures = measure(settings, root, mode, args.restarts)
        medians[mode] = statistics.median(figures)
        out[mode] = {"restart_to_first_prediction_s": figures, "session_timeout_s": settings.worker.session_timeout_s}
    path = write_result("restart.json", out)
    print(f"restart to first prediction (median): static membership {medians['static']} s, "
          f"dynamic {medians['dynamic']} s; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
