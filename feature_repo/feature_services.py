"""Versioned feature services: one per model generation. A model records the service it was trained on
and its ordered feature list; promotion refuses a model whose list differs from the service's."""

from feast import FeatureService

from feature_repo.feature_views import merchant_profile, merchant_windows, user_profile, user_windows
from feature_repo.on_demand import transaction_features

fraud_model_v1 = FeatureService(
    name="fraud_model_v1",
    features=[
        user_windows,
        merchant_windows,
        user_profile[["user_account_age_days", "user_avg_amount_30d", "user_txn_count_30d"]],
        merchant_profile,
        transaction_features,
    ],
    description="Inputs of the fraud model, generation 1.",
)

PRODUCTION_SERVICE = fraud_model_v1
