from __future__ import annotations

import math

import numpy as np
import pytest

from stream_app.core.drift import SEASONAL_FEATURES, RollingSample, drift_psi, missing_ratios
from stream_app.core.metrics import histogram_reference, psi
from stream_app.core.request_features import REQUEST_FEATURES


def test_the_sample_keeps_the_latest_rows_across_wraparounds() -> None:
    sample = RollingSample(("a", "b"), size=5)
    batches = [np.arange(2 * n, dtype=np.float64).reshape(n, 2) + 100 * k for k, n in enumerate((3, 4, 2))]
    for batch in batches:
        sample.add(batch)
    everything = np.vstack(batches)
    assert len(sample) == 5
    assert sorted(map(tuple, sample.values().tolist())) == sorted(map(tuple, everything[-5:].tolist()))
    sample.add(np.arange(14, dtype=np.float64).reshape(7, 2))  # more than fits at once
    assert sorted(sample.values()[:, 0].tolist()) == [4.0, 6.0, 8.0, 10.0, 12.0]


def test_a_matrix_of_other_features_is_refused() -> None:
    with pytest.raises(ValueError, match="expected"):
        RollingSample(("a", "b")).add(np.zeros((3, 3)))


def test_missing_ratios_count_nan_per_feature() -> None:
    sample = RollingSample(("a", "b"), size=10)
    assert missing_ratios(sample) == {}
    sample.add(np.array([[1.0, np.nan], [np.nan, np.nan], [3.0, 4.0], [4.0, np.nan]]))
    assert missing_ratios(sample) == {"a": 0.25, "b": 0.75}


def test_psi_is_small_for_the_reference_distribution_and_large_after_a_shift() -> None:
    rng = np.random.default_rng(3)
    reference = {"a": histogram_reference(rng.normal(size=20_000)), "b": histogram_reference(rng.normal(size=20_000))}
    sample = RollingSample(("a", "b", "unreferenced"), size=5000)
    sample.add(np.column_stack([rng.normal(size=5000), rng.normal(loc=2.0, size=5000), rng.normal(size=5000)]))
    drift = drift_psi(sample, reference)
    assert set(drift) == {"a", "b"}
    assert drift["a"] < 0.02 and drift["b"] > 0.25
    assert drift["b"] == psi(reference["b"], sample.values()[:, 1])  # the offline PSI, on the same values


def test_a_malformed_reference_gives_nan_not_an_error() -> None:
    sample = RollingSample(("a",))
    sample.add(np.ones((4, 1)))
    assert math.isnan(drift_psi(sample, {"a": {"edges": [1.0], "proportions": [1.0]}})["a"])
    assert drift_psi(RollingSample(("a",)), {"a": histogram_reference([1.0, 2.0])}) == {}


def test_seasonal_features_get_no_psi_and_are_request_features() -> None:
    assert SEASONAL_FEATURES.issubset(REQUEST_FEATURES)
    rng = np.random.default_rng(5)
    hours = rng.integers(0, 24, size=20_000).astype(np.float64)  # a day-long reference
    reference = {"hour_of_day": histogram_reference(hours), "a": histogram_reference(rng.normal(size=20_000))}
    sample = RollingSample(("hour_of_day", "a"), size=1000)
    sample.add(np.column_stack([np.full(1000, 13.0), rng.normal(size=1000)]))  # a sample from one hour
    assert psi(reference["hour_of_day"], sample.values()[:, 0]) > 0.25  # what it would report
    assert set(drift_psi(sample, reference)) == {"a"}
    assert set(missing_ratios(sample)) == {"hour_of_day", "a"}  # still checked for missing values
