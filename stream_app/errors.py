"""The project's exception tree. Errors raised by Kafka, Redis, Feast or files are mapped to these at
the adapter boundary, so callers handle one family and the reason survives into DLQ records and logs."""


class StreamscoreError(Exception):
    """Root of every error streamscore raises on purpose."""


class ConfigError(StreamscoreError):
    """Settings or a definition file are wrong; fix the configuration, retrying will not help."""


class InvalidRecordError(StreamscoreError):
    """A record on the wire cannot be accepted. ``code`` is the stable reason written to the DLQ."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ServiceUnavailableError(StreamscoreError):
    """Kafka, Redis or another dependency did not answer; the operation may succeed if retried."""


class DataValidationError(StreamscoreError):
    """A training or evaluation frame failed its checks; ``report`` says which and why."""

    def __init__(self, message: str, report: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.report = report or {}


class RegistryError(StreamscoreError):
    """A model version is missing, malformed, or refused by the promotion gate."""
