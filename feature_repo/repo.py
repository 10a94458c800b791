"""The file `feast apply` reads: it re-exports every definition of the feature_repo package once."""

from feature_repo.data_sources import (
    merchant_profile_source,
    merchant_window_log,
    merchant_window_push,
    transaction_request,
    user_profile_source,
    user_window_log,
    user_window_push,
)
from feature_repo.entities import merchant, user
from feature_repo.feature_services import fraud_model_v1
from feature_repo.feature_views import merchant_profile, merchant_windows, user_profile, user_windows
from feature_repo.on_demand import transaction_features

__all__ = [
    "fraud_model_v1",
    "merchant",
    "merchant_profile",
    "merchant_profile_source",
    "merchant_window_log",
    "merchant_window_push",
    "merchant_windows",
    "transaction_features",
    "transaction_request",
    "user",
    "user_profile",
    "user_profile_source",
    "user_window_log",
    "user_window_push",
    "user_windows",
]
