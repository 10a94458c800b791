from __future__ import annotations

import math

import numpy as np
import pytest
import xgboost

from stream_app.core.scoring import Scorer, as_features, assemble

FEATURES = ("a", "b", "c")


def _booster() -> xgboost.Booster:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)
    return xgboost.train({"objective": "binary:logistic", "max_depth": 3, "nthread": 1},
                         xgboost.DMatrix(x, label=y, feature_names=list(FEATURES)), num_boost_round=20)


def test_assemble_orders_by_feature_list_and_marks_missing_as_nan() -> None:
    matrix = assemble(FEATURES, [[{"c": 3, "x": 9}, {"a": 1.5}], [{"b": None}]])
    assert matrix.shape == (2, 3)
    assert matrix[0, 0] == 1.5 and math.isnan(matrix[0, 1]) and matrix[0, 2] == 3.0
    assert np.isnan(matrix[1]).all()
    assert as_features(FEATURES, matrix[0]) == {"a": 1.5, "b": None, "c": 3.0}


def test_batch_scores_equal_the_booster_on_a_dmatrix_and_decisions_follow_the_threshold() -> None:
    booster = _booster()
    scorer = Scorer(booster, FEATURES, threshold=0.5, version="v0001")
    matrix = np.array([[2.0, 1.0, 0.0], [-2.0, -1.0, 0.0], [np.nan, 0.3, 1.0]])
    scores = scorer.score(matrix)
    expected = booster.predict(xgboost.DMatrix(matrix, feature_names=list(FEATURES), missing=np.nan))
    np.testing.assert_allclose(scores, expected, rtol=1e-6)
    assert scorer.decide(scores)[:2] == ["decline", "approve"]
    assert scorer.score(np.empty((0, 3))).shape == (0,)


def test_a_feature_supplied_twice_is_a_definition_bug() -> None:
    with pytest.raises(ValueError, match="twice"):
        assemble(FEATURES, [[{"a": 1.0}, {"a": float("nan")}]])


def test_a_matrix_of_the_wrong_width_is_refused() -> None:
    with pytest.raises(ValueError, match="expected"):
        Scorer(_booster(), FEATURES, 0.5, "v").score(np.zeros((1, 2)))
