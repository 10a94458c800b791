"""What the model consumes, derived from the Feast FeatureService objects (never retyped): the ordered
feature list, value bounds for validation, which features may be missing, and the label column."""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from typing import TYPE_CHECKING

from stream_app.adapters.feast_store import service_feature_names
from stream_app.core.profiles import MERCHANT_PROFILE_FEATURES, USER_PROFILE_FEATURES
from stream_app.core.request_features import REQUEST_FEATURES, REQUEST_INPUTS
from stream_app.core.window_spec import ALL_WINDOWS, Function

if TYPE_CHECKING:
    from feast import FeatureService

LABEL = "is_fraud"


def production_service() -> FeatureService:
    """The FeatureService the production model is trained and served on (feature_repo's object)."""
    from feature_repo.feature_services import PRODUCTION_SERVICE  # noqa: PLC0415  (imports feast, ~5 s: on first use)

    return PRODUCTION_SERVICE


@lru_cache(maxsize=1)
def _names() -> tuple[str, ...]:
    return tuple(service_feature_names(production_service()))


def model_feature_names() -> list[str]:
    """The production FeatureService's features, in its order: the model's column order."""
    return list(_names())


def production_service_name() -> str:
    return str(production_service().name)


def feature_definitions_hash() -> str:
    """SHA-256 of what the production FeatureService is made of: its name, each view projection's features
    and types, every window's definition and the request features and inputs. Equal definitions give
    equal hashes in any process; the code computing them is identified by the git commit instead."""
    service = production_service()
    spec = {
        "service": service.name,
        "projections": [{"view": p.name, "features": [[f.name, str(f.dtype)] for f in p.features]}
                        for p in service.feature_view_projections],
        "windows": [repr(w) for w in ALL_WINDOWS],
        "request_features": REQUEST_FEATURES,
        "request_inputs": REQUEST_INPUTS,
    }
    return "sha256:" + hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def feature_bounds() -> dict[str, tuple[float, float]]:
    """Closed ranges every feature value must fall in (NaN is judged by ``nullable_features``)."""
    inf = float("inf")
    bounds: dict[str, tuple[float, float]] = {}
    for spec in ALL_WINDOWS:
        bounds[spec.name] = (0.0, 1.0) if spec.function is Function.RATE else (0.0, inf)
    for name in (*USER_PROFILE_FEATURES, *MERCHANT_PROFILE_FEATURES):
        bounds[name] = (0.0, inf)
    bounds.update({"txn_amount": (0.0, 1e7), "amount_to_user_mean_24h": (0.0, inf), "is_foreign_country": (0, 1),
                   "hour_of_day": (0, 23), "channel_code": (0, 2)})
    return {name: bounds[name] for name in model_feature_names()}


def nullable_features() -> set[str]:
    """Features that are legitimately missing: no previous transaction, or no profile yet (a user or
    merchant newer than the last daily snapshot)."""
    since = {s.name for s in ALL_WINDOWS if s.function is Function.SINCE_PREVIOUS}
    means = {s.name for s in ALL_WINDOWS if s.function in (Function.MEAN, Function.MAX)}
    profile = set(USER_PROFILE_FEATURES) | set(MERCHANT_PROFILE_FEATURES)
    return (since | means | profile | {"amount_to_user_mean_24h"}) & set(model_feature_names())
