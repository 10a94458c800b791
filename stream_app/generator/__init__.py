"""A seeded, realistic card-transaction world: legitimate cardholders, three fraud patterns (card
testing, account takeover, compromised merchants) plus friendly-fraud label noise, delayed labels,
and hostile records. ``generate_history`` / ``write_history`` build and store a history (as
``streamscore generate history`` does), ``stream_app.generator.live.stream_live`` streams the same world
to Kafka (a load generator, or with ``realistic`` at history's per-user rates: ``arrivals``), and
``stream_app.generator.invalid`` holds the hostile records with their expected DLQ codes.
"""

from stream_app.generator.config import GENERATOR_VERSION, FraudConfig, HistoryConfig
from stream_app.generator.events import Pattern
from stream_app.generator.history import (
    EVALUATION_ONLY_COLUMNS,
    History,
    generate_history,
    golden_config,
    golden_history,
    read_history,
    write_history,
)
from stream_app.generator.invalid import INVALID_KINDS, InvalidKind, InvalidRecord, invalid_examples
from stream_app.generator.wire import labels_from_frame, transactions_from_frame

__all__ = [
    "EVALUATION_ONLY_COLUMNS",
    "GENERATOR_VERSION",
    "INVALID_KINDS",
    "FraudConfig",
    "History",
    "HistoryConfig",
    "InvalidKind",
    "InvalidRecord",
    "Pattern",
    "generate_history",
    "golden_config",
    "golden_history",
    "invalid_examples",
    "labels_from_frame",
    "read_history",
    "transactions_from_frame",
    "write_history",
]
