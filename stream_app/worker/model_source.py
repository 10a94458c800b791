"""The model the worker scores with, reloaded without a restart when its alias moves, once the new version
has passed its checks (``check_candidate``); a version that fails them is refused and the old one keeps
serving."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import xgboost

from stream_app.adapters.model_registry import LoadedModel, ModelRegistry
from stream_app.core.observations import ServedModel
from stream_app.core.scoring import Scorer
from stream_app.errors import RegistryError
from stream_app.worker.sensor import NULL_SENSOR, WorkerSensor

log = logging.getLogger(__name__)

Stamp = tuple[str | None, int]
CANARY_ROWS = 256  # the most recent feature vectors a new version must score before it serves


@dataclass(frozen=True, slots=True)
class Candidate:
    """The outcome of checking the version an alias stamp names: ``loaded`` ready to serve, or ``refusal``;
    ``canary_rows``: how many rows it was checked on."""

    stamp: Stamp
    loaded: LoadedModel | None = None
    refusal: str = ""
    canary_rows: int = 0


def canary_refusal(scorer: Scorer, canary: npt.NDArray[np.float64]) -> str:
    """Why ``scorer`` must not serve, judged on the ``canary`` rows (its features' columns): it fails on
    them, or a score is not a finite probability; "" when every score is finite and in [0, 1]."""
    try:
        scores = scorer.score(canary)
    except (ValueError, xgboost.core.XGBoostError) as exc:
        return f"it cannot score the canary batch: {exc}"
    bad = ~(np.isfinite(scores) & (scores >= 0.0) & (scores <= 1.0))
    if scores.shape != (len(canary),) or bad.any():
        shown = ", ".join(f"{s:g}" for s in scores[bad][:5])
        return f"{int(bad.sum())} of {len(canary)} canary scores are not finite values in [0, 1] ({shown})"
    return ""


def check_candidate(registry: ModelRegistry, stamp: Stamp, served: Sequence[str] | None,
                    recent: Sequence[npt.NDArray[np.float64]] = ()) -> Candidate:
    """Load the version ``stamp`` names and check it: the registry's load checks the model file against
    the recorded SHA-256 and that XGBoost parses it; then its features must be exactly ``served`` (names
    and order; None: not checked) and it must score, as finite values in [0, 1], the canary: the
    ``recent`` rows (vectors of ``served``) and one row with every feature missing."""
    version = stamp[0]
    if version is None:
        return Candidate(stamp, refusal="the alias is unset")
    try:
        loaded = registry.load(version)
    except RegistryError as exc:
        return Candidate(stamp, refusal=str(exc))
    features = tuple(loaded.metadata.features)
    if served is not None and features != tuple(served):
        missing = [f for f in served if f not in features]
        extra = [f for f in features if f not in served]
        return Candidate(stamp, refusal=f"its features differ from the {len(served)} the worker serves: "
                         f"missing {missing}, extra {extra}" + ("" if missing or extra else " (order)"))
    canary = np.vstack([*recent, np.full((1, len(features)), np.nan)])
    refusal = canary_refusal(loaded.scorer(), canary)
    if refusal:
        return Candidate(stamp, refusal=refusal, canary_rows=len(canary))
    return Candidate(stamp, loaded, canary_rows=len(canary))


def _inline(call: Callable[[], Candidate]) -> Future[Candidate]:
    future: Future[Candidate] = Future()
    future.set_result(call())
    return future


def _threaded(call: Callable[[], Candidate]) -> Future[Candidate]:
    future: Future[Candidate] = Future()

    def run() -> None:
        try:
            future.set_result(call())
        except Exception as exc:  # noqa: BLE001 - handed to the lane thread, which logs it
            future.set_exception(exc)

    threading.Thread(target=run, name="streamscore-model-check", daemon=True).start()
    return future


class RegistryModel:
    """The scorer of the version an alias names in the registry.

    ``current()`` is called at the start of each batch's scoring (on the lane thread). At most every
    ``poll_s`` it compares the alias stamp (version, mtime); when it changed, the new version is loaded
    and checked (``check_candidate``) on a thread of its own (``background``; inline otherwise, for unit
    tests), and a later ``current()`` swaps it in once it passed, so a batch never waits for a load and
    is scored by one version throughout. A version that fails is refused: logged with the reason, told
    to the sensor, and not tried again until the alias moves again (a re-promotion of the same version
    counts: it changes the mtime); the previous model keeps serving.

    The canary is the last ``canary_rows`` vectors the worker scored (told by ``scored``) plus one with
    every feature missing, so a version is checked on real inputs, and on something right after start.
    ``served`` is the feature list the worker serves (None: the features of the model it starts with);
    the model it starts with is checked the same way, RegistryError if it fails.
    """

    def __init__(self, registry: ModelRegistry, alias: str, poll_s: float,
                 clock: Callable[[], float] = time.monotonic, sensor: WorkerSensor = NULL_SENSOR, *,
                 served: Sequence[str] | None = None, background: bool = False,
                 canary_rows: int = CANARY_ROWS) -> None:
        if canary_rows < 1:
            raise ValueError(f"canary_rows must be >= 1, got {canary_rows}")
        self.registry = registry
        self.sensor = sensor
        self.alias = alias
        self.poll_s = poll_s
        self.clock = clock
        self.canary_rows = canary_rows
        self._submit = _threaded if background else _inline
        self._recent: deque[npt.NDArray[np.float64]] = deque()
        self._recent_rows = 0
        self._stamp = registry.alias_stamp(alias)
        start = check_candidate(registry, self._stamp, served)
        if start.loaded is None:
            raise RegistryError(f"alias {alias} names {self._stamp[0]}, which cannot serve: {start.refusal}")
        self.served = tuple(start.loaded.metadata.features)
        self._scorer = self._serve(start.loaded)
        self._pending: tuple[Stamp, Future[Candidate]] | None = None
        self._checked = clock()

    def _serve(self, loaded: LoadedModel) -> Scorer:
        scorer = loaded.scorer()
        self.sensor.on_model_loaded(ServedModel(scorer.version, self.alias, scorer.threshold, scorer.features,
                                                loaded.metadata.reference_distributions))
        return scorer

    def scored(self, features: Sequence[str], matrix: npt.NDArray[np.float64]) -> None:
        """``matrix`` (events × ``features``) was scored: its last rows join the canary (vectors of other
        features than the served ones are ignored)."""
        if tuple(features) != self.served or len(matrix) == 0:
            return
        self._recent.append(matrix[-self.canary_rows:].copy())
        self._recent_rows += len(self._recent[-1])
        while self._recent_rows - len(self._recent[0]) >= self.canary_rows:
            self._recent_rows -= len(self._recent.popleft())

    def current(self) -> Scorer:
        """The scorer for the batch about to be scored; swaps in a checked new version first."""
        if self._pending is not None and self._pending[1].done():
            self._settle(*self._pending)
        now = self.clock()
        if self._pending is None and now - self._checked >= self.poll_s:
            self._checked = now
            stamp = self.registry.alias_stamp(self.alias)
            if stamp != self._stamp:
                served, recent = self.served, list(self._recent)
                self._pending = stamp, self._submit(lambda: check_candidate(self.registry, stamp, served, recent))
                if self._pending[1].done():
                    self._settle(*self._pending)
        return self._scorer

    def _settle(self, stamp: Stamp, checked: Future[Candidate]) -> None:
        """Serve the checked candidate, or refuse it; either way ``stamp`` is the one seen last."""
        self._pending = None
        self._stamp = stamp
        try:
            candidate = checked.result()
        except Exception:  # the check itself broke: refused like a failed one
            self.sensor.on_model_failed()
            log.exception("checking %s of alias %s failed; still serving %s", stamp[0], self.alias,
                          self._scorer.version)
            return
        if candidate.loaded is None:
            self.sensor.on_model_failed()
            log.error("alias %s moved to %s; refused, still serving %s: %s", self.alias, stamp[0],
                      self._scorer.version, candidate.refusal)
            return
        previous = self._scorer.version
        self._scorer = self._serve(candidate.loaded)
        log.info("model %s -> %s (%s), checked on %d canary rows", previous, self._scorer.version, self.alias,
                 candidate.canary_rows)
