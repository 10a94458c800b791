"""Request-time features, declared to Feast as an on-demand view that calls the same core function the
worker calls, so `get_historical_features` computes them exactly as serving does."""

from typing import Any

from feast import Field
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64, Int64

from feature_repo.data_sources import transaction_request
from feature_repo.feature_views import user_profile, user_windows
from stream_app.core import request_features

_KINDS = {"float": Float64, "int": Int64}


@on_demand_feature_view(  # type: ignore[untyped-decorator]
    sources=[transaction_request, user_windows, user_profile],
    schema=[Field(name=name, dtype=_KINDS[kind]) for name, kind in request_features.REQUEST_FEATURES.items()],
    mode="python",
)
def transaction_features(inputs: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """Column-wise call of stream_app.core.request_features.compute. Feast re-executes this function
    from its source text without the module's globals, hence the import inside."""
    from stream_app.core import request_features  # noqa: PLC0415  (Feast runs the UDF without module globals)

    rows = [
        request_features.compute(
            amount=amount, country=country, channel=channel, event_hour=hour, user_mean_24h=mean,
            home_country=home,
        )
        for amount, country, channel, hour, mean, home in zip(
            inputs["amount"], inputs["country"], inputs["channel"], inputs["event_hour"],
            inputs["user_amount_mean_24h"], inputs["home_country"], strict=True,
        )
    ]
    return {name: [row[name] for row in rows] for name in request_features.REQUEST_FEATURES}
