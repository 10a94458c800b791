"""Feature views. Schemas are built from the core's specs, so a window or profile feature is named and
typed in exactly one place (stream_app.core)."""

from datetime import timedelta

from feast import FeatureView, Field
from feast.types import Float64, Int64, String

from feature_repo.data_sources import (
    merchant_profile_source,
    merchant_window_push,
    user_profile_source,
    user_window_push,
)
from feature_repo.entities import merchant, user
from stream_app.core.profiles import MERCHANT_PROFILE_FEATURES, USER_PROFILE_FEATURES
from stream_app.core.window_spec import MERCHANT_WINDOWS, USER_WINDOWS, Function, WindowSpec

_KINDS = {"float": Float64, "int": Int64, "str": String}

# A window row is logged at the instant of the event it was served for, so the as-of join always finds
# it exactly; a short TTL keeps the offline join small and marks online rows older than an hour as
# stale (windows move on without new events).
WINDOW_ROW_TTL = timedelta(hours=1)


def _window_field(spec: WindowSpec) -> Field:
    dtype = Int64 if spec.function in (Function.COUNT, Function.DISTINCT) else Float64
    return Field(name=spec.name, dtype=dtype, description=f"{spec.function} of {spec.field or 'events'} "
                 f"over {spec.window_s} s ({spec.source} time)")


user_windows = FeatureView(
    name="user_windows", entities=[user], ttl=WINDOW_ROW_TTL, online=True, source=user_window_push,
    schema=[_window_field(spec) for spec in USER_WINDOWS],
    description="Sliding-window features per user, computed by stream_app.core at each transaction.",
)
merchant_windows = FeatureView(
    name="merchant_windows", entities=[merchant], ttl=WINDOW_ROW_TTL, online=True,
    source=merchant_window_push, schema=[_window_field(spec) for spec in MERCHANT_WINDOWS],
    description="Sliding-window features per merchant (transactions and delayed labels).",
)
user_profile = FeatureView(
    name="user_profile", entities=[user], ttl=timedelta(days=2), online=True, source=user_profile_source,
    schema=[Field(name=name, dtype=_KINDS[kind]) for name, kind in USER_PROFILE_FEATURES.items()],
    description="Daily batch profile of each user.",
)
merchant_profile = FeatureView(
    name="merchant_profile", entities=[merchant], ttl=timedelta(days=2), online=True,
    source=merchant_profile_source,
    schema=[Field(name=name, dtype=_KINDS[kind]) for name, kind in MERCHANT_PROFILE_FEATURES.items()],
    description="Daily batch profile of each merchant.",
)
