"""Training frames from Feast: the entity frame built from labelled transactions, and
``get_historical_features`` through the production FeatureService (point-in-time correct)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from models.features import LABEL, model_feature_names, production_service
from stream_app.adapters.feast_store import in_repo
from stream_app.core.profiles import MISSING_PROFILE, TIMESTAMP
from stream_app.errors import DataValidationError

if TYPE_CHECKING:
    from feast import FeatureStore

def entity_frame(transactions: pd.DataFrame, labels: pd.DataFrame, label_cutoff: pd.Timestamp | None = None,
                 ) -> pd.DataFrame:
    """One row per labelled transaction: the entity keys, the event time, the request fields the
    on-demand features need, and the label. With ``label_cutoff``, only labels known by then count."""
    known = labels if label_cutoff is None else labels[pd.to_datetime(labels["label_time"], utc=True) <= label_cutoff]
    frame = transactions[["event_id", "user_id", "merchant_id", "amount", "country", "channel", "event_time"]].merge(
        known[["event_id", "is_fraud"]], on="event_id", how="inner", validate="one_to_one")
    stamps = pd.to_datetime(frame["event_time"], utc=True).dt.as_unit("us")
    out = pd.DataFrame({
        "event_id": frame["event_id"].astype(str),
        "user_id": frame["user_id"].astype(np.int64),
        "merchant_id": frame["merchant_id"].astype(np.int64),
        TIMESTAMP: stamps,
        "amount": frame["amount"].astype(np.float64),
        "country": frame["country"].astype(str),
        "channel": frame["channel"].astype(str),
        "event_hour": stamps.dt.hour.astype(np.int64),
        LABEL: frame["is_fraud"].astype(bool),
    })
    return out.sort_values([TIMESTAMP, "event_id"], ignore_index=True)


def historical_features(store: FeatureStore, entities: pd.DataFrame) -> pd.DataFrame:
    """The FeatureService's features for every entity row, in the entity frame's order."""
    service = store.get_feature_service(production_service().name)
    with in_repo(store):
        frame = store.get_historical_features(entity_df=entities, features=service).to_df()
    missing = [name for name in model_feature_names() if name not in frame.columns]
    if missing:
        raise DataValidationError(f"historical retrieval lacks features {missing}", {"missing": missing})
    # Feast may reorder rows: restore the entity frame's order by event_id.
    frame = frame.set_index("event_id").loc[entities["event_id"]].reset_index()
    return with_missing_profiles(frame)


def with_missing_profiles(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with a missing profile value read as serving reads it (``MISSING_PROFILE``: counts 0).
    Snapshots hold a row for every entity from its first day, so a profile is missing only for an entity
    the snapshots never saw, e.g. one that first appeared on the stream; the online store then serves
    these defaults, and training must see the same values."""
    defaults = {name: value for name, value in MISSING_PROFILE.items()
                if name in frame.columns and value is not None and not np.isnan(value)}
    return frame.fillna(defaults) if defaults else frame


def apply_definitions(store: FeatureStore) -> None:
    """Register every definition of feature_repo in the store's registry (what `feast apply` does)."""
    import feature_repo.repo as definitions  # noqa: PLC0415  (imports feast, ~5 s: only callers that apply pay)

    store.apply([getattr(definitions, name) for name in definitions.__all__])
