"""The wire contract: every topic's role and default name, and the JSON schema of every record on them.

Producers and consumers import from here only; nothing else spells a topic name or a field. Unknown
fields in incoming records are ignored (forward compatibility); known fields are strictly typed.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from stream_app.core.decision import Decision
from stream_app.errors import InvalidRecordError
from stream_app.iso_codes import COUNTRIES, CURRENCIES


class TopicRole(StrEnum):
    """What a topic carries. The value is the default topic name; settings may rename it."""

    TRANSACTIONS = "transactions"  # key: user_id as decimal text; value: Transaction
    LABELS = "labels"  # key: user_id as decimal text; value: Label
    PREDICTIONS = "predictions"  # key: event_id; value: Prediction (production model)
    PREDICTIONS_SHADOW = "predictions.shadow"  # key: event_id; value: Prediction (shadow model)
    TRANSACTIONS_DLQ = "transactions.dlq"  # key: original key; value: DeadLetter
    LABELS_JOINED = "labels.joined"  # key: event_id; value: JoinedLabel (the worker's label join, for the sink)


class TopicSpec(BaseModel):
    """A topic's name and partition count (replication is the deployment's: ``KafkaSettings``)."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(min_length=1, max_length=249, pattern=r"^[a-zA-Z0-9._-]+$")
    partitions: int = Field(default=4, ge=1)


class Topics(BaseModel):
    """The topic layout; every role has a spec. Configurable as ``STREAMSCORE_TOPICS__<ROLE>__NAME`` and
    ``__PARTITIONS``; a part left unset keeps the role's default (renaming a topic keeps its partitions)."""

    transactions: TopicSpec = TopicSpec(name=TopicRole.TRANSACTIONS.value)
    labels: TopicSpec = TopicSpec(name=TopicRole.LABELS.value)
    predictions: TopicSpec = TopicSpec(name=TopicRole.PREDICTIONS.value)
    predictions_shadow: TopicSpec = TopicSpec(name=TopicRole.PREDICTIONS_SHADOW.value)
    transactions_dlq: TopicSpec = TopicSpec(name=TopicRole.TRANSACTIONS_DLQ.value, partitions=1)
    labels_joined: TopicSpec = TopicSpec(name=TopicRole.LABELS_JOINED.value, partitions=1)

    @model_validator(mode="before")
    @classmethod
    def _role_defaults(cls, data: Any) -> Any:
        """Complete a partial spec (a dict, as settings read from the environment) from the role's default."""
        if not isinstance(data, dict):
            return data
        completed = dict(data)
        for name, spec in data.items():
            field = cls.model_fields.get(name)
            if field is not None and isinstance(spec, dict) and isinstance(field.default, TopicSpec):
                completed[name] = {**field.default.model_dump(), **spec}
        return completed

    def spec(self, role: TopicRole) -> TopicSpec:
        spec: TopicSpec = getattr(self, role.name.lower())
        return spec

    def all(self) -> list[TopicSpec]:
        return [self.spec(role) for role in TopicRole]


class ErrorCode(StrEnum):
    """Stable reasons a record is routed to the dead-letter topic."""

    DECODE = "decode"  # not UTF-8 or not JSON
    SCHEMA = "schema"  # JSON, but a field is missing, mistyped or out of range
    KEY_MISMATCH = "key_mismatch"  # the record key is not the value's user_id
    LATE = "late"  # event_time older than the allowed lateness; not applied to windows
    DUPLICATE = "duplicate"  # the user's state already applied this event_id; its first prediction stands
    FUTURE = "future"  # event_time too far ahead of the record's Kafka timestamp; not applied to windows
    INTERNAL = "internal"  # the batch kept failing for a reason that is not the record's (a bug): kept, not lost
    UNDELIVERABLE = "undeliverable"  # the broker refused its prediction for good (e.g. topic not authorised)


# A date first: pydantic would otherwise read numeric text ("1700000000") as Unix seconds.
_RFC3339_START = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ]")
# Times every store downstream can hold: the offline log, pandas and Feast's offline store use
# datetime64[ns] (1677-09-21 .. 2262-04-11); a time outside it would fail the whole batch there.
EARLIEST_EVENT_TIME: Final = datetime(1678, 1, 1, tzinfo=UTC)
LATEST_EVENT_TIME: Final = datetime(2262, 1, 1, tzinfo=UTC)  # exclusive


def _utc_timestamp(value: Any) -> Any:
    """RFC 3339 text with an explicit offset only; numbers (also as text) and naive times are refused."""
    if not isinstance(value, str) or not _RFC3339_START.match(value):
        raise ValueError("must be an RFC 3339 timestamp string")
    return value


def _to_utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("must carry a UTC offset (e.g. 'Z')")
    try:
        utc = value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00: not a ValueError, so pydantic would not catch it
        utc = None
    if utc is None or not EARLIEST_EVENT_TIME <= utc < LATEST_EVENT_TIME:
        raise ValueError(f"must be in [{EARLIEST_EVENT_TIME:%Y-%m-%d}, {LATEST_EVENT_TIME:%Y-%m-%d}) UTC")
    return utc


def _finite(value: Any) -> Any:
    """Before the range checks, so NaN and Infinity are refused as what they are, not as out of range."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"not finite ({value}): an amount must be a finite number")
    return value


def _iso(codes: frozenset[str], what: str) -> AfterValidator:
    def check(value: str) -> str:
        if value not in codes:
            raise ValueError(f"not an {what} code")
        return value

    return AfterValidator(check)


UtcTimestamp = Annotated[datetime, BeforeValidator(_utc_timestamp), AfterValidator(_to_utc)]
EntityId = Annotated[int, Field(strict=True, ge=0, le=2**63 - 1)]
Currency = Annotated[str, Field(strict=True, min_length=3, max_length=3), _iso(CURRENCIES, "ISO 4217")]
Country = Annotated[str, Field(strict=True, min_length=2, max_length=2), _iso(COUNTRIES, "ISO 3166-1 alpha-2")]
_M = TypeVar("_M", bound=BaseModel)
Channel = Literal["pos", "web", "app"]


class Transaction(BaseModel):
    """A card transaction as producers publish it on ``transactions`` (key = user_id as decimal text)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_id: Annotated[str, Field(strict=True, min_length=1, max_length=128)]
    user_id: EntityId
    merchant_id: EntityId
    amount: Annotated[float, Field(strict=True, gt=0, le=1e7), BeforeValidator(_finite)]
    currency: Currency
    country: Country
    channel: Channel
    event_time: UtcTimestamp


class Label(BaseModel):
    """A delayed ground-truth label on ``labels`` (chargebacks arrive hours to days later)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_id: Annotated[str, Field(strict=True, min_length=1, max_length=128)]
    user_id: EntityId
    is_fraud: Annotated[bool, Field(strict=True)]
    label_time: UtcTimestamp


class Prediction(BaseModel):
    """One scored transaction on ``predictions`` (key = event_id)."""

    model_config = ConfigDict(frozen=True)

    event_id: str
    user_id: int
    merchant_id: int
    score: float
    decision: Decision
    model_version: str
    features: dict[str, float | None]  # None = missing (JSON has no NaN)
    event_time: datetime
    scored_at: datetime
    latency_ms: float


class JoinedLabel(BaseModel):
    """A label joined to its prediction on ``labels.joined`` (key = event_id): what the label log stores."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_id: Annotated[str, Field(strict=True, min_length=1, max_length=128)]
    user_id: EntityId
    merchant_id: EntityId
    is_fraud: Annotated[bool, Field(strict=True)]
    label_time: UtcTimestamp
    score: float
    model_version: str


class DeadLetterError(BaseModel):
    """Why a record was dead-lettered: its code and a human-readable message."""

    code: ErrorCode
    message: str


class DeadLetter(BaseModel):
    """A record that could not be processed, with where it came from and why. Key and value are the
    original bytes, base64-encoded, so nothing is lost whatever they contained — unless the record is too
    large to be re-published whole (``fitted``): then ``value`` (or ``key``) holds a prefix, flagged by
    ``value_truncated`` (``key_truncated``), with the original's length in bytes and its SHA-256 (hex)."""

    source_topic: str
    partition: int
    offset: int
    key: str | None
    value: str | None
    error: DeadLetterError
    failed_at: datetime
    value_truncated: bool = False
    value_length: int | None = None  # set when truncated
    value_sha256: str | None = None  # set when truncated
    key_truncated: bool = False
    key_length: int | None = None  # set when truncated
    key_sha256: str | None = None  # set when truncated

    @classmethod
    def of(
        cls,
        *,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        error: InvalidRecordError,
        failed_at: datetime,
    ) -> DeadLetter:
        return cls(
            source_topic=topic,
            partition=partition,
            offset=offset,
            key=None if key is None else base64.b64encode(key).decode("ascii"),
            value=None if value is None else base64.b64encode(value).decode("ascii"),
            error=DeadLetterError(code=ErrorCode(error.code), message=error.message),
            failed_at=failed_at,
        )

    def raw_key(self) -> bytes | None:
        """The key as bytes: the dead letter's own Kafka key."""
        return None if self.key is None else base64.b64decode(self.key)

    def wire_size(self) -> int:
        """Bytes of the Kafka record that carries it: its JSON and its key."""
        return len(encode(self)) + len(self.raw_key() or b"")

    def fitted(self, max_bytes: int) -> DeadLetter:
        """This dead letter if its record takes at most ``max_bytes``; otherwise a copy that keeps the
        error (message cut to ``MESSAGE_KEPT`` characters), the source position, at most ``max_bytes // 8``
        bytes of the key, and as long a prefix of the value as fits, each cut one with its length and
        SHA-256. ``max_bytes`` must leave room for the envelope (``FITTED_MIN_BYTES`` at least)."""
        if self.wire_size() <= max_bytes:
            return self
        if max_bytes < FITTED_MIN_BYTES:
            raise ValueError(f"a dead letter needs at least {FITTED_MIN_BYTES} bytes, not {max_bytes}")
        fitted = self.model_copy(update={"error": DeadLetterError(code=self.error.code,
                                                                  message=self.error.message[:MESSAGE_KEPT])})
        key = self.raw_key()
        if key is not None and len(key) > max_bytes // 8:
            fitted = fitted.model_copy(update={
                "key": base64.b64encode(key[:max_bytes // 8]).decode("ascii"), "key_truncated": True,
                "key_length": len(key), "key_sha256": hashlib.sha256(key).hexdigest()})
        if self.value is None or fitted.wire_size() <= max_bytes:
            return fitted
        value = base64.b64decode(self.value)
        fitted = fitted.model_copy(update={"value": "", "value_truncated": True, "value_length": len(value),
                                           "value_sha256": hashlib.sha256(value).hexdigest()})
        room = max(0, max_bytes - fitted.wire_size())  # for the prefix's base64: 4 characters per 3 bytes
        return fitted.model_copy(update={"value": base64.b64encode(value[:room // 4 * 3]).decode("ascii")})


MESSAGE_KEPT: Final = 1000  # characters of the error message a fitted dead letter keeps
# Room for the envelope, the message (≤ 6 bytes a character in JSON) and the key kept (≤ 1/8 of the bound,
# 4/3 of that again as base64 in the JSON)
FITTED_MIN_BYTES: Final = 16 * 1024


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False)[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "<record>"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def decode_transaction(value: bytes | None, key: bytes | None = None) -> Transaction:
    """Parse and validate one ``transactions`` record; raises InvalidRecordError with a DLQ code."""
    txn = _decode(Transaction, value)
    if key is not None and key != str(txn.user_id).encode():
        raise InvalidRecordError(ErrorCode.KEY_MISMATCH, f"key {key[:40]!r} is not user_id {txn.user_id}")
    return txn


_EVENT_TIME_FIELD = re.compile(rb'"event_time"\s*:\s*"([^"\\]{10,64})"')


def transaction_time_hint(value: bytes | None) -> float | None:
    """The event time (epoch seconds) a ``transactions`` record gives, read without validating the record:
    cheap enough for every record as it is fetched (the worker's catch-up alignment). None when the
    record has no readable event_time with a UTC offset; ``decode_transaction`` decides its validity."""
    found = _EVENT_TIME_FIELD.search(value) if value else None
    if found is None:
        return None
    try:
        when = datetime.fromisoformat(found.group(1).decode("ascii"))
        return None if when.utcoffset() is None else when.timestamp()
    except (ValueError, OverflowError, UnicodeDecodeError):
        return None


def decode_label(value: bytes | None) -> Label:
    """Parse and validate one ``labels`` record; raises InvalidRecordError with a DLQ code."""
    return _decode(Label, value)


def decode_prediction(value: bytes | None) -> Prediction:
    """Parse one ``predictions`` record; raises InvalidRecordError with a DLQ code."""
    return _decode(Prediction, value)


def decode_joined_label(value: bytes | None) -> JoinedLabel:
    """Parse and validate one ``labels.joined`` record; raises InvalidRecordError with a DLQ code."""
    return _decode(JoinedLabel, value)


def _decode(model: type[_M], value: bytes | None) -> _M:
    if value is None:
        raise InvalidRecordError(ErrorCode.DECODE, "record has no value (tombstone)")
    try:
        return model.model_validate_json(value)
    except ValidationError as exc:
        if any(e["type"] in ("json_invalid", "json_type") for e in exc.errors()):
            raise InvalidRecordError(ErrorCode.DECODE, _describe(exc)) from None
        raise InvalidRecordError(ErrorCode.SCHEMA, _describe(exc)) from None


def encode(record: BaseModel) -> bytes:
    """Serialise any contract record to its JSON wire form."""
    return record.model_dump_json().encode()


def user_key(user_id: int) -> bytes:
    """The partitioning key of ``transactions`` and ``labels``: user_id as decimal text."""
    return str(user_id).encode()
