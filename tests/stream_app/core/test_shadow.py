from __future__ import annotations

import math

import numpy as np
import pytest

from stream_app.core.shadow import ShadowComparison, decision_agreement, score_correlation


def test_score_correlation_is_pearsons_r() -> None:
    a = np.array([0.1, 0.2, 0.3, 0.4])
    assert score_correlation(a, 2 * a + 0.05) == pytest.approx(1.0)
    assert score_correlation(a, 1 - a) == pytest.approx(-1.0)
    b = np.array([0.2, 0.1, 0.4, 0.3])  # r = (sum of centred products) / (norms) = 0.6
    assert score_correlation(a, b) == pytest.approx(0.6)


def test_score_correlation_is_undefined_without_variation_or_events() -> None:
    assert math.isnan(score_correlation(np.array([0.3]), np.array([0.4])))
    assert math.isnan(score_correlation(np.array([0.3, 0.3]), np.array([0.1, 0.4])))
    with pytest.raises(ValueError, match="3 champion scores but 2"):
        score_correlation(np.zeros(3), np.zeros(2))


def test_decision_agreement_is_the_share_of_equal_decisions() -> None:
    assert decision_agreement(np.array([True, False, True, False]), np.array([True, True, True, False])) == 0.75
    assert math.isnan(decision_agreement(np.array([], dtype=bool), np.array([], dtype=bool)))


def test_comparison_decides_each_model_at_its_own_threshold_and_restarts_for_a_new_shadow() -> None:
    comparison = ShadowComparison(window=4)
    champion, shadow = np.array([0.1, 0.6, 0.7, 0.2]), np.array([0.1, 0.4, 0.8, 0.35])
    comparison.add("v2", champion, shadow, champion_threshold=0.5, shadow_threshold=0.3)
    # champion declines 0.6, 0.7; shadow (>= 0.3) declines 0.4, 0.8, 0.35: the last one differs
    assert comparison.agreement() == 0.75
    assert comparison.correlation() == pytest.approx(float(np.corrcoef(champion, shadow)[0, 1]))
    comparison.add("v2", np.array([0.9, 0.9]), np.array([0.0, 0.0]), 0.5, 0.3)
    assert comparison.count() == 4  # the window keeps the latest 4
    assert comparison.agreement() == 0.25
    comparison.add("v3", np.array([0.9]), np.array([0.9]), 0.5, 0.3)
    assert comparison.count() == 1 and comparison.shadow_version == "v3" and comparison.agreement() == 1.0
