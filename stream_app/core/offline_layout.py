"""Where the offline feature log, the label log, the transaction log and the batch profiles live, and their bookkeeping
columns: written by the sink and the backfill, read by feature_repo's sources and training."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

OFFLINE_LOG_DIR: Final = "data/offline"  # relative to the Feast repository (see feature_repo.data_sources)
BATCH_DIR: Final = "data/batch"
USER_WINDOW_LOG: Final = f"{OFFLINE_LOG_DIR}/user_windows"  # one directory of parquet parts per view
MERCHANT_WINDOW_LOG: Final = f"{OFFLINE_LOG_DIR}/merchant_windows"
LABEL_LOG: Final = "labels"  # relative to the data directory
TRANSACTION_LOG: Final = "transactions"  # relative to the data directory: the valid transactions' request fields
CREATED: Final = "created_timestamp"  # when the row was written; Feast's tie-break between equal timestamps
# A log's parts: the sink's in hour directories (``hour_dir``), the backfill's at the top. Hour
# directories carry no "=": DuckDB would read "key=value" directories as extra (hive partition) columns.
PARTS_GLOB: Final = "**/*.parquet"


HOUR_FORMAT: Final = "%Y-%m-%dT%H"


def hour_dir(moment: datetime) -> str:
    """The directory of a log's parts holding rows of ``moment``'s UTC hour, e.g. ``2026-11-01T13``."""
    return moment.astimezone(UTC).strftime(HOUR_FORMAT)


def hour_of(name: str) -> datetime | None:
    """The start of the hour an ``hour_dir`` name stands for; None for any other name."""
    try:
        return datetime.strptime(name, HOUR_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None
