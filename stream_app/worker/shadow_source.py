"""The shadow model: the version the ``shadow`` alias names, if it is set, reloaded like the champion."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from stream_app.adapters.model_registry import ModelRegistry
from stream_app.core.scoring import Scorer
from stream_app.errors import RegistryError
from stream_app.worker.model_source import RegistryModel

log = logging.getLogger(__name__)
SHADOW_ALIAS = "shadow"


class ShadowModel:
    """The scorer of the version ``alias`` names, or None while the alias is unset.

    ``current()`` is called once per batch; at most every ``poll_s`` it reads the alias stamp. When the
    alias appears it starts a ``RegistryModel`` for it (which reloads on later moves, like the champion's);
    when the alias is removed it stops shadowing. A version that cannot be loaded when the alias appears
    leaves no shadow (logged) until the alias moves again. Its ``RegistryModel`` reports to no sensor: the
    worker's model metrics describe the champion; the shadow's are reported with each scored batch."""

    def __init__(self, registry: ModelRegistry, poll_s: float, alias: str = SHADOW_ALIAS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.registry = registry
        self.alias = alias
        self.poll_s = poll_s
        self.clock = clock
        self._model: RegistryModel | None = None
        self._stamp: tuple[str | None, int] = (None, 0)
        self._checked = float("-inf")

    def current(self) -> Scorer | None:
        now = self.clock()
        if now - self._checked >= self.poll_s:
            self._checked = now
            try:
                stamp = self.registry.alias_stamp(self.alias)
            except RegistryError:  # an unreadable alias file: keep shadowing (or not) as before
                log.exception("alias %s cannot be read", self.alias)
                stamp = self._stamp
            if stamp[0] is None:
                if self._model is not None:
                    log.info("alias %s removed: no shadow model any more", self.alias)
                self._model = None
            elif self._model is None and stamp != self._stamp:
                try:
                    self._model = RegistryModel(self.registry, self.alias, self.poll_s, clock=self.clock)
                except RegistryError:
                    log.exception("alias %s names %s but it cannot be loaded: no shadow", self.alias, stamp[0])
                else:
                    log.info("shadow model %s (%s)", self._model.current().version, self.alias)
            self._stamp = stamp
        return None if self._model is None else self._model.current()
