"""The project's exception tree. Errors raised by Kafka, Redis, Feast or files are mapped to these at
the adapter boundary, so callers handle one family and the reason survives into DLQ records and logs.

    StreamscoreError
    ├── ConfigError               settings or a definition file are wrong: fix them, retrying won't help
    │   └── AccessDeniedError     Kafka or Redis refused the credentials, or its certificate is not trusted
    ├── InvalidRecordError        one record is refused; its ``code`` goes to the DLQ
    ├── ServiceUnavailableError   a dependency did not answer: wait (backoff) and retry the batch
    ├── PermanentDeliveryError    the broker refused outputs for good (too large, topic invalid or not
    │                             authorised): retrying won't help; the runner replaces or drops them
    ├── BatchAbandonedError       shutting down during a retry wait: the batch is left unacked
    ├── RetryBatchError           nothing is wrong, the batch must run again from fresh state
    │   ├── StateConflictError    another writer changed a key first: re-run at once
    │   └── LabelsAheadError      labels before their transactions were scored: re-run later
    ├── DataValidationError       a training or evaluation frame failed its checks
    └── RegistryError             a model version is missing, malformed or refused by the gate
"""


class StreamscoreError(Exception):
    """Root of every error streamscore raises on purpose."""


class ConfigError(StreamscoreError):
    """Settings or a definition file are wrong; fix the configuration, retrying will not help."""


class AccessDeniedError(ConfigError):
    """Kafka or Redis refused the configured credentials, or presented a certificate the configured CA does
    not sign: a start-up check fails at once instead of the clients retrying in the background."""


class InvalidRecordError(StreamscoreError):
    """A record on the wire cannot be accepted. ``code`` is the stable reason written to the DLQ."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ServiceUnavailableError(StreamscoreError):
    """Kafka, Redis or another dependency did not answer; the operation may succeed if retried."""


class PermanentDeliveryError(StreamscoreError):
    """The broker refused some outputs for a reason retrying cannot fix (a record too large, an invalid or
    unauthorised topic); every other output of the same call was delivered. ``refused`` maps the position
    of each refused output in the call to the broker's reason."""

    def __init__(self, refused: dict[int, str]) -> None:
        reasons = sorted(set(refused.values()))
        super().__init__(f"{len(refused)} outputs refused for good: {'; '.join(reasons[:3])}")
        self.refused = refused


class BatchAbandonedError(StreamscoreError):
    """The worker is shutting down while the batch waits to be retried: it is given up unacknowledged, so
    it is delivered again after the restart."""


class RetryBatchError(StreamscoreError):
    """The batch has to be processed again from fresh state; no dependency failed and nothing is broken.
    Raised only as one of its subclasses, which say how soon."""


class StateConflictError(RetryBatchError):
    """Another writer changed window-state keys a batch wrote since it loaded them; nothing was written.

    Re-process the batch from fresh state at once: nothing is wrong, someone else was first."""

    def __init__(self, keys: list[str]) -> None:
        shown = ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
        super().__init__(f"window state changed by another writer since it was loaded: {shown}")
        self.keys = keys


class LabelsAheadError(RetryBatchError):
    """Labels arrived before their transactions were scored; retry the batch once transactions catch up."""


class DataValidationError(StreamscoreError):
    """A training or evaluation frame failed its checks; ``report`` says which and why."""

    def __init__(self, message: str, report: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.report = report or {}


class RegistryError(StreamscoreError):
    """A model version is missing, malformed, or refused by the promotion gate."""
