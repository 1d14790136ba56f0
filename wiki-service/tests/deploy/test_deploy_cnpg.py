"""The chart on CloudNativePG: the rendered Cluster, Pooler, ScheduledBackup and PodMonitors, checked
against the upstream CRD schemas and against how the app is wired to them. No cluster runs here."""

from __future__ import annotations

import copy

import pytest

from crd_schemas import crd_errors
from deploy_helpers import (
    CHART,
    CI_VALUES,
    CRD_KINDS,
    by_kind,
    containers,
    one,
    pod_spec,
    render,
    render_text,
)

CNPG = CHART / "ci" / "cnpg-values.yaml"
POOLER = CHART / "ci" / "cnpg-pooler-values.yaml"
ON = {"postgresql.enabled": False, "cloudnativepg.enabled": True}


def _env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def test_custom_resources_valid_against_their_crds(scenario):
    _, objects = scenario
    for obj in objects:
        if obj["kind"] in CRD_KINDS:
            errors = crd_errors(obj)
            assert not errors, f"{obj['kind']}/{obj['metadata']['name']}: {errors}"


def test_every_custom_resource_kind_is_rendered_by_some_ci_values():
    kinds = {o["kind"] for path in CI_VALUES for o in render(path)}
    assert kinds >= CRD_KINDS, CRD_KINDS - kinds


def test_strict_validation_refuses_unknown_and_mistyped_fields():
    cluster = one(render(CNPG), "Cluster")
    assert crd_errors(cluster) == []
    typo = copy.deepcopy(cluster)
    typo["spec"]["bootstrap"]["initdb"]["ownr"] = "wiki"  # a cluster would silently prune it
    assert any("ownr" in e for e in crd_errors(typo))
    wrong = copy.deepcopy(cluster)
    wrong["spec"]["postgresql"]["parameters"]["max_connections"] = 100  # parameters are strings
    assert any("max_connections" in e for e in crd_errors(wrong))


def test_cluster_defaults_and_app_wiring():
    objects = render(sets=ON)
    cluster = one(objects, "Cluster")
    name = cluster["metadata"]["name"]
    spec = cluster["spec"]
    assert spec["instances"] >= 2
    assert spec["storage"]["size"] == "8Gi"
    cm = one(objects, "ConfigMap", "api")["data"]
    initdb = spec["bootstrap"]["initdb"]
    assert (initdb["database"], initdb["owner"]) == (cm["DB_NAME"], cm["DB_USER"])
    assert "secret" not in initdb  # the operator generates <cluster>-app for the owner
    assert spec["postgresql"]["parameters"]["max_connections"] == "100"
    assert (cm["DB_HOST"], cm["DB_PORT"]) == (f"{name}-rw", "5432")
    assert "DB_PREPARED_STATEMENTS" not in cm
    # no bundled database and no chart-made password: the app reads the operator's Secret
    assert not by_kind(objects, "StatefulSet") and not by_kind(objects, "Secret")
    pod = one(objects, "Deployment", "api")["spec"]["template"]["spec"]
    (vol,) = [v for v in pod["volumes"] if "secret" in v]
    assert vol["secret"]["secretName"] == f"{name}-app"
    assert vol["secret"]["items"] == [{"key": "password", "path": "password"}]
    for _, c in containers(one(objects, "Deployment", "api")):
        assert _env(c)["DB_PASSWORD_FILE"]["value"].endswith("/password")
    # nothing monitors or backs up what was not asked for
    assert not by_kind(objects, "PodMonitor") and not by_kind(objects, "ScheduledBackup")
    assert not by_kind(objects, "Pooler")


def test_cluster_takes_an_owner_secret_for_initdb():
    objects = render(sets={**ON, "cloudnativepg.existingSecret": "wiki-owner"})
    assert one(objects, "Cluster")["spec"]["bootstrap"]["initdb"]["secret"] == {"name": "wiki-owner"}
    pod = one(objects, "Deployment", "api")["spec"]["template"]["spec"]
    assert [v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v] == ["wiki-owner"]


def test_pooler_in_transaction_mode_and_the_app_behind_it():
    objects = render(POOLER)
    cluster, pooler = one(objects, "Cluster"), one(objects, "Pooler")
    assert pooler["spec"]["cluster"]["name"] == cluster["metadata"]["name"]
    assert pooler["spec"]["type"] == "rw" and pooler["spec"]["instances"] >= 2
    assert pooler["spec"]["pgbouncer"]["poolMode"] == "transaction"
    cm = one(objects, "ConfigMap", "api")["data"]
    assert cm["DB_HOST"] == pooler["metadata"]["name"]  # the Pooler's Service has its name
    assert cm["DB_PREPARED_STATEMENTS"] == "false"
    # migrations take session advisory locks and CREATE INDEX CONCURRENTLY: straight to the primary
    direct = f"{cluster['metadata']['name']}-rw"
    migrate = one(objects, "Deployment", "api")["spec"]["template"]["spec"]["initContainers"][0]
    job = one(objects, "Job", "migration")["spec"]["template"]["spec"]["containers"][0]
    for c in (migrate, job):
        env = _env(c)
        assert env["DB_HOST"]["value"] == direct
        assert "DB_PREPARED_STATEMENTS" not in env
        assert "envFrom" not in c  # so the ConfigMap's pooler host cannot leak back in


def test_monitoring_follows_metrics_service_monitor():
    objects = render(POOLER)
    monitors = {m["spec"]["selector"]["matchLabels"].popitem(): m for m in by_kind(objects, "PodMonitor")}
    cluster, pooler = one(objects, "Cluster")["metadata"]["name"], one(objects, "Pooler")["metadata"]["name"]
    # the labels CloudNativePG puts on instance and PgBouncer pods, and their port named metrics
    assert set(monitors) == {("cnpg.io/cluster", cluster), ("cnpg.io/poolerName", pooler)}
    for monitor in monitors.values():
        assert [e["port"] for e in monitor["spec"]["podMetricsEndpoints"]] == ["metrics"]
    assert not by_kind(render(POOLER, {"metrics.serviceMonitor.enabled": False}), "PodMonitor")


def test_scheduled_backups():
    objects = render(CNPG)
    cluster, backup = one(objects, "Cluster"), one(objects, "ScheduledBackup")
    assert backup["spec"]["cluster"]["name"] == cluster["metadata"]["name"]
    assert backup["spec"]["method"] == "volumeSnapshot"
    assert cluster["spec"]["backup"]["volumeSnapshot"]["className"] == "csi-snapclass"
    assert len(backup["spec"]["schedule"].split()) == 6  # seconds first, unlike a CronJob
    objects = render(POOLER)
    cluster, backup = one(objects, "Cluster"), one(objects, "ScheduledBackup")
    assert backup["spec"]["method"] == "plugin"
    (plugin,) = cluster["spec"]["plugins"]
    assert plugin["name"] == backup["spec"]["pluginConfiguration"]["name"] and plugin["isWALArchiver"]
    proc = render_text(sets={**ON, "cloudnativepg.scheduledBackup.enabled": True}, check=False)
    assert proc.returncode != 0 and "volumeSnapshotClassName is required" in proc.stderr


@pytest.mark.parametrize(
    "sets,message",
    [
        ({"cloudnativepg.enabled": True}, "cloudnativepg.enabled needs postgresql.enabled=false"),
        ({**ON, "backup.enabled": True}, "with CloudNativePG use cloudnativepg.scheduledBackup"),
    ],
)
def test_mode_conflicts_are_refused(sets, message):
    proc = render_text(sets=sets, check=False)
    assert proc.returncode != 0 and message in proc.stderr


def test_connection_budget_guards_the_cluster():
    # straight to -rw: 3 pods x 20 + 3 + 1 = 64 of max_connections 100 - 10 reserved
    assert render_text(sets={**ON, "cloudnativepg.maxConnections": 74}, check=False).returncode == 0
    proc = render_text(sets={**ON, "cloudnativepg.maxConnections": 73}, check=False)
    assert proc.returncode != 0 and "= 64" in proc.stderr and "cloudnativepg.maxConnections 73" in proc.stderr


def test_connection_budget_behind_the_pooler():
    pooled = {**ON, "cloudnativepg.pooler.enabled": True}
    # 20 pods would need 21 x 20 + 22 = 442 server connections; through PgBouncer they share
    # 2 x 20 of them, so the Cluster's default 100 is enough
    assert render_text(sets={**ON, "replicaCount": 20}, check=False).returncode != 0
    assert render_text(sets={**pooled, "replicaCount": 20}, check=False).returncode == 0
    # the clients must fit in one PgBouncer (kube-proxy may send them all to one)
    proc = render_text(
        sets={**pooled, "replicaCount": 20, "cloudnativepg.pooler.maxClientConnections": 419}, check=False
    )
    assert proc.returncode != 0 and "= 420 client connections" in proc.stderr
    # and the poolers' server connections plus the migrations must fit in the Cluster
    proc = render_text(
        sets={**pooled, "cloudnativepg.pooler.instances": 3, "cloudnativepg.pooler.defaultPoolSize": 30},
        check=False,
    )
    assert proc.returncode != 0 and "3 PgBouncers x (defaultPoolSize 30 + reservePoolSize 0)" in proc.stderr
    assert "= 94" in proc.stderr  # 90 + 3 init containers + 1 Job, over 100 - 10


def test_no_workload_of_ours_is_a_database_in_cnpg_mode():
    # the operator runs PostgreSQL and PgBouncer; the chart's own pods are the app's
    objects = render(POOLER)
    components = {o["metadata"]["labels"]["app.kubernetes.io/component"] for o in objects if pod_spec(o)}
    assert components == {"api", "migration", "test"}
