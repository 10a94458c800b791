"""Where the offline feature log and the batch profiles live inside a Feast repository, and their
bookkeeping columns: written by the worker and the backfill, read by feature_repo's sources."""

from typing import Final

OFFLINE_LOG_DIR: Final = "data/offline"  # relative to the Feast repository (see feature_repo.data_sources)
BATCH_DIR: Final = "data/batch"
USER_WINDOW_LOG: Final = f"{OFFLINE_LOG_DIR}/user_windows"  # one directory of parquet parts per view
MERCHANT_WINDOW_LOG: Final = f"{OFFLINE_LOG_DIR}/merchant_windows"
CREATED: Final = "created_timestamp"  # when the row was written; Feast's tie-break between equal timestamps
