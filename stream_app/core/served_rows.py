"""A view's served window row, derived from the feature vector a prediction carries: the sink writes
these rows to the offline log, so training reads exactly what serving served."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime

from stream_app.core.records import WindowRow
from stream_app.core.window_spec import WindowSpec


def view_row(entity_id: int, event_time: datetime, features: Mapping[str, float | None],
             specs: Sequence[WindowSpec]) -> WindowRow | None:
    """The row of the view ``specs`` for one served event; a feature served as missing (None) is NaN.
    None when the vector lacks one of the view's features (a model that does not use it)."""
    values: dict[str, float] = {}
    for spec in specs:
        if spec.name not in features:
            return None
        value = features[spec.name]
        values[spec.name] = math.nan if value is None else float(value)
    return entity_id, event_time, values
