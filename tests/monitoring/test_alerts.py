"""monitoring/alerts.yml: valid rules over catalogue metrics only, and promtool unit tests
(monitoring/alerts_test.yml) with a firing and a quiet case for every alert, each of which fails when its
rule stops firing."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from models.promote import DEFAULT_MIN_ROC_AUC
from models.triggers import DEFAULT_MAX_PSI, DEFAULT_MIN_AUC_LABELS
from tests.fixtures.metric_catalogue import PROMETHEUS_OWN, stored_names
from tests.fixtures.prometheus import ALERT_RULES, MONITORING, metric_names, promtool_binary

RULE_TESTS = MONITORING / "alerts_test.yml"


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool_binary(), *map(str, args)], capture_output=True, text=True, timeout=120,
                          check=False)


def alerts(rules: Path = ALERT_RULES) -> dict[str, dict[str, Any]]:
    document = yaml.safe_load(rules.read_text())
    return {rule["alert"]: rule for group in document["groups"] for rule in group["rules"] if "alert" in rule}


def rule_cases() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULE_TESTS.read_text())
    return [case for test in document["tests"] for case in test["alert_rule_test"]]


def test_alert_rules_are_valid() -> None:
    checked = promtool("check", "rules", ALERT_RULES)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in checked.stdout


def test_promtool_rule_tests_pass() -> None:
    tested = promtool("test", "rules", RULE_TESTS)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_the_alerts_the_issue_asks_for_exist() -> None:
    assert set(alerts()) >= {"StreamscoreConsumerLagGrowing", "StreamscoreDeadLetterRateHigh",
                             "StreamscoreNoPredictions", "StreamscoreFeaturesStale", "StreamscoreFeatureDrift",
                             "StreamscoreOnlineRocAucLow", "StreamscoreModelReloadFailing",
                             "StreamscoreWorkerDown"}


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    cases = rule_cases()
    tested = {case["alertname"] for case in cases}
    assert tested <= set(alerts()), "a test names an alert that does not exist"
    for name in alerts():
        assert any(c["alertname"] == name and c.get("exp_alerts") for c in cases), f"{name}: no firing case"
        assert any(c["alertname"] == name and not c.get("exp_alerts") for c in cases), f"{name}: no quiet case"


@pytest.mark.parametrize("name", sorted(alerts()))
def test_the_firing_case_fails_when_the_rule_never_fires(name: str, tmp_path: Path) -> None:
    """Proves the promtool tests are not vacuous: with this alert's expression replaced by one that is never
    true, ``promtool test rules`` fails, naming the alert."""
    document = yaml.safe_load(ALERT_RULES.read_text())
    for group in document["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == name:
                rule["expr"] = "vector(1) == 0"
    (tmp_path / ALERT_RULES.name).write_text(yaml.safe_dump(document))
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    tested = promtool("test", "rules", tmp_path / RULE_TESTS.name)
    assert tested.returncode != 0
    assert name in tested.stdout + tested.stderr


def test_rules_read_only_catalogue_metrics() -> None:
    known = set(stored_names()) | PROMETHEUS_OWN
    for name, rule in alerts().items():
        used = metric_names(rule["expr"])
        assert used, name
        assert used <= known, f"{name} reads {sorted(used - known)}, which the catalogue does not define"


def test_every_alert_documents_its_threshold_and_severity() -> None:
    for name, rule in alerts().items():
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert {"summary", "description", "threshold"} <= set(rule["annotations"]), name


def test_the_online_roc_auc_floor_is_the_promotion_floor() -> None:
    expr = alerts()["StreamscoreOnlineRocAucLow"]["expr"]
    floor = re.search(r"streamscore_online_roc_auc\s*<\s*([0-9.]+)", expr)
    assert floor is not None and float(floor.group(1)) == DEFAULT_MIN_ROC_AUC


def test_the_retrain_triggers_default_to_the_alerts_thresholds() -> None:
    """``retrain --if-needed`` retrains on what the drift and ROC-AUC alerts fire on (models.triggers)."""
    drift = re.search(r"streamscore_feature_drift_psi\)\s*>\s*([0-9.]+)", alerts()["StreamscoreFeatureDrift"]["expr"])
    assert drift is not None and float(drift.group(1)) == DEFAULT_MAX_PSI
    labels = re.search(r"streamscore_online_labels\s*>=\s*([0-9]+)", alerts()["StreamscoreOnlineRocAucLow"]["expr"])
    assert labels is not None and int(labels.group(1)) == DEFAULT_MIN_AUC_LABELS
