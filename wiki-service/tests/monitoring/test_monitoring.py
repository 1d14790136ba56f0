"""The chart's alerts and dashboard against Debian's Prometheus, and its monitoring objects
against the Prometheus Operator's CRD schemas."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import jsonschema
import pytest
import yaml

from tests.deploy.deploy_helpers import CHART, NAMESPACE, REPO

pytestmark = pytest.mark.monitoring

UNIT_TESTS = Path(__file__).with_name("alerts-test.yaml")
DASHBOARD = CHART / "dashboards" / "wiki-service.json"
# Grafana's interval variables, as wide as the run: every window holds the scraped traffic.
GRAFANA_INTERVALS = {"$__rate_interval": "30s", "$__range": "5m"}


def promtool(
    *args: str, cwd: Path | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", *args], capture_output=True, text=True, timeout=120, cwd=cwd, input=stdin
    )


def alert_names(rules_file: Path) -> set[str]:
    groups = yaml.safe_load(rules_file.read_text())["groups"]
    return {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}


def test_every_rule_passes_promtool_check(prometheus_tools, rules_file):
    proc = promtool("check", "rules", str(rules_file))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(alert_names(rules_file))} rules found" in proc.stdout


def test_every_alert_has_a_unit_test_that_fires_it_and_one_that_does_not(
    prometheus_tools, rules_file, tmp_path
):
    cases = yaml.safe_load(UNIT_TESTS.read_text())["tests"]
    checks = [check for case in cases for check in case["alert_rule_test"]]
    for alert in alert_names(rules_file):
        expectations = [bool(c["exp_alerts"]) for c in checks if c["alertname"] == alert]
        assert True in expectations and False in expectations, f"{alert}: needs a firing and a quiet case"
    shutil.copy(rules_file, tmp_path / "rules.yaml")
    shutil.copy(UNIT_TESTS, tmp_path / UNIT_TESTS.name)
    proc = promtool("test", "rules", UNIT_TESTS.name, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_metrics_pass_promtool_check(live_prometheus):
    metrics = httpx.get(f"{live_prometheus.api_a.base_url}/metrics", timeout=10).text
    assert "users_created_total" in metrics
    proc = promtool("check", "metrics", stdin=metrics)
    assert proc.returncode == 0 and not (proc.stdout + proc.stderr).strip(), proc.stdout + proc.stderr


def dashboard_queries(service: str) -> tuple[list[str], list[tuple[str, str]]]:
    """(panel expressions, (label, match) of each label_values variable), variables filled in."""
    dashboard = json.loads(DASHBOARD.read_text())
    fill = {"$namespace": NAMESPACE, "$service": service, **GRAFANA_INTERVALS}

    def filled(expr: str) -> str:
        for name, value in fill.items():
            expr = expr.replace(name, value)
        assert "$" not in expr, f"unknown variable in {expr!r}"
        return expr

    exprs = [filled(t["expr"]) for p in dashboard["panels"] for t in p.get("targets", [])]
    variables = []
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            match, label = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["query"]["query"]).groups()
            variables.append((label, filled(match)))
    return exprs, variables


def test_every_dashboard_query_returns_data(live_prometheus, service_name):
    exprs, variables = dashboard_queries(service_name)
    assert exprs and variables
    empty = [expr for expr in exprs if not live_prometheus.query(expr)]
    assert not empty, f"panels without data: {empty}"
    for label, match in variables:
        answer = httpx.get(
            f"{live_prometheus.url}/api/v1/label/{label}/values", params={"match[]": match}, timeout=10
        ).json()
        assert {NAMESPACE, service_name} & set(answer["data"]), (label, match, answer)


def test_live_prometheus_evaluates_every_rule_without_error(live_prometheus, rules_file):
    groups = httpx.get(f"{live_prometheus.url}/api/v1/rules", timeout=10).json()["data"]["groups"]
    rules = {rule["name"]: rule for group in groups for rule in group["rules"]}
    assert set(rules) == alert_names(rules_file)
    for name, rule in rules.items():
        assert rule["health"] == "ok", (name, rule.get("lastError"))  # "unknown" until evaluated
    assert rules["WikiServiceNoReadyPods"]["state"] == "inactive"  # both targets are up


# -- the CRD schemas ---------------------------------------------------------------------------


def crd_directory() -> Path:
    """shared/crds beside the repository (CI) or beside one of its parents (a worktree)."""
    for parent in REPO.parents:
        if (parent / "shared" / "crds").is_dir():
            return parent / "shared" / "crds"
    pytest.fail(f"no shared/crds beside {REPO} or its parents", pytrace=False)


def crd_schemas() -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> openAPIV3Schema of every served version of every CRD there."""
    schemas = {}
    for path in sorted(crd_directory().glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                if version.get("served", True):
                    schemas[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    return schemas


def validation_errors(obj: dict, schemas: dict) -> list[str]:
    schema = schemas[(obj["apiVersion"], obj["kind"])]
    validator = jsonschema.Draft7Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)]


def test_monitoring_objects_validate_against_the_crd_schemas(monitoring_objects):
    schemas = crd_schemas()
    kinds_used = ("ServiceMonitor", "PodMonitor", "PrometheusRule")
    assert {("monitoring.coreos.com/v1", k) for k in kinds_used} <= set(schemas)
    crd_objects = [o for o in monitoring_objects if (o["apiVersion"], o["kind"]) in schemas]
    kinds = {o["kind"] for o in crd_objects}
    assert {"ServiceMonitor", "PrometheusRule"} <= kinds, kinds
    for obj in crd_objects:
        assert not validation_errors(obj, schemas), (obj["kind"], validation_errors(obj, schemas))
    # the schemas do reject what the operator would: a port number where a port name goes
    broken = copy.deepcopy(next(o for o in crd_objects if o["kind"] == "ServiceMonitor"))
    broken["spec"]["endpoints"][0]["port"] = 8000
    assert validation_errors(broken, schemas)
