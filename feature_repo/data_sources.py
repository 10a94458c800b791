"""Where feature rows come from. Stream features have a PushSource whose batch source is the offline
feature log the sink and the backfill append to (a directory of parquet parts in hour directories, read by glob); batch
profiles are daily parquet snapshots. Paths are relative to the repository: the DuckDB offline store
resolves them against the working directory, so offline reads run from inside the repository (the
`feast` CLI does that itself; stream_app.adapters.feast_store.in_repo does it for library calls)."""

from feast import Field, FileSource, PushSource, RequestSource
from feast.types import Float64, Int64, String

from stream_app.core.offline_layout import BATCH_DIR, CREATED, MERCHANT_WINDOW_LOG, PARTS_GLOB, USER_WINDOW_LOG
from stream_app.core.profiles import TIMESTAMP
from stream_app.core.request_features import REQUEST_INPUTS

_KINDS = {"float": Float64, "int": Int64, "str": String}

user_window_log = FileSource(
    name="user_window_log", path=f"{USER_WINDOW_LOG}/{PARTS_GLOB}", timestamp_field=TIMESTAMP,
    created_timestamp_column=CREATED, description="Every user window row served, one per transaction.",
)
merchant_window_log = FileSource(
    name="merchant_window_log", path=f"{MERCHANT_WINDOW_LOG}/{PARTS_GLOB}", timestamp_field=TIMESTAMP,
    created_timestamp_column=CREATED, description="Every merchant window row served, one per transaction.",
)
user_window_push = PushSource(name="user_window_push", batch_source=user_window_log)
merchant_window_push = PushSource(name="merchant_window_push", batch_source=merchant_window_log)

user_profile_source = FileSource(
    name="user_profile_source", path=f"{BATCH_DIR}/user_profile.parquet", timestamp_field=TIMESTAMP,
    description="Daily user snapshots, each from history strictly before its timestamp.",
)
merchant_profile_source = FileSource(
    name="merchant_profile_source", path=f"{BATCH_DIR}/merchant_profile.parquet", timestamp_field=TIMESTAMP,
    description="Daily merchant snapshots, each from history strictly before its timestamp.",
)

transaction_request = RequestSource(
    name="transaction_request",
    schema=[Field(name=name, dtype=_KINDS[kind]) for name, kind in REQUEST_INPUTS.items()],
    description="Fields of the transaction being scored.",
)
