"""The model the worker scores with, reloaded without a restart when its alias moves."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from stream_app.adapters.model_registry import ModelRegistry
from stream_app.core.observations import ServedModel
from stream_app.core.scoring import Scorer
from stream_app.errors import RegistryError
from stream_app.worker.sensor import NULL_SENSOR, WorkerSensor

log = logging.getLogger(__name__)


class RegistryModel:
    """The scorer of the version an alias names in the registry.

    ``current()`` is called once per batch; at most every ``poll_s`` it compares the alias stamp
    (version, mtime) and loads the new version if it changed, so a promotion takes effect within
    ``poll_s`` plus one batch. A version that fails to load keeps the previous model serving (logged).
    The sensor is told of each model that starts serving and of each version that failed to load.
    """

    def __init__(self, registry: ModelRegistry, alias: str, poll_s: float,
                 clock: Callable[[], float] = time.monotonic, sensor: WorkerSensor = NULL_SENSOR) -> None:
        self.registry = registry
        self.sensor = sensor
        self.alias = alias
        self.poll_s = poll_s
        self.clock = clock
        self._stamp = registry.alias_stamp(alias)
        self._scorer = self._load()
        self._checked = clock()

    def _load(self) -> Scorer:
        loaded = self.registry.load_alias(self.alias)
        scorer = loaded.scorer()
        self.sensor.on_model_loaded(ServedModel(scorer.version, self.alias, scorer.threshold, scorer.features,
                                                loaded.metadata.reference_distributions))
        return scorer

    def current(self) -> Scorer:
        now = self.clock()
        if now - self._checked >= self.poll_s:
            self._checked = now
            stamp = self.registry.alias_stamp(self.alias)
            if stamp != self._stamp:
                try:
                    scorer = self._load()
                except RegistryError:
                    self.sensor.on_model_failed()
                    log.exception("alias %s moved to %s but it cannot be loaded; still serving %s",
                                  self.alias, stamp[0], self._scorer.version)
                else:
                    log.info("model %s -> %s (%s)", self._scorer.version, scorer.version, self.alias)
                    self._scorer = scorer
                self._stamp = stamp
        return self._scorer
