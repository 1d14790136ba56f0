"""The Helm chart: lint, schema validity, and the policies every rendering must keep."""

from __future__ import annotations

import base64
import json
import re
import string

import kubernetes_validate
import pytest
import yaml

from deploy_helpers import (
    CHART,
    CI_VALUES,
    CRD_KINDS,
    NAMESPACE,
    RELEASE,
    WORKLOAD_KINDS,
    by_kind,
    containers,
    helm,
    one,
    pod_labels,
    pod_spec,
    render,
    render_text,
    schema_properties,
    value_comments,
    values_args,
)

K8S_VERSIONS = ["1.29.0", kubernetes_validate.latest_version()]
FULLNAME = f"{RELEASE}-wiki-service"
REQUIRED_LABELS = [
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/part-of",
    "helm.sh/chart",
]


# -- lint and schemas -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "values_file", [None, *CI_VALUES], ids=lambda p: "chart-defaults" if p is None else p.stem
)
def test_helm_lint_strict(values_file):
    proc = helm("lint", "--strict", str(CHART), *values_args(values_file), check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("k8s_version", K8S_VERSIONS)
def test_objects_valid_against_kubernetes_schemas(scenario, k8s_version):
    _, objects = scenario
    assert objects
    for obj in objects:
        if obj["kind"] in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(obj, k8s_version, strict=True)
        except kubernetes_validate.ValidationError as err:
            pytest.fail(
                f"{obj['kind']}/{obj['metadata']['name']} invalid for {k8s_version}: {err.message} "
                f"at {list(err.path)}",
                pytrace=False,
            )


def test_crds_only_when_enabled():
    defaults = {o["kind"] for o in render()}
    assert not defaults & CRD_KINDS
    monitored = {
        o["kind"]
        for name in ("servicemonitor", "prometheusrule")
        for o in render(CHART / "ci" / f"{name}-values.yaml")
    }
    assert {"ServiceMonitor", "PrometheusRule"} <= monitored


def test_schema_rejects_typos():
    for sets in (
        {"replicaCont": 3},
        {"config.db.poolSze": 3},
        {"postgresql.maxConection": 5},
        {"image.pullPolicy": "Sometimes"},
        {"cloudnativepg.poolr.enabled": True},
        {"backup.retension": 3},
        {"backup.restore.file": "../etc/passwd"},
        {"cloudnativepg.scheduledBackup.schedule": "0 3 * * *"},
    ):
        proc = render_text(sets=sets, check=False)
        assert proc.returncode != 0 and "schema" in proc.stderr, (sets, proc.stderr)


def _api(objects: list[dict]) -> dict:
    return one(objects, "Deployment", "api")["spec"]["template"]["spec"]


# One ci/*-values.yaml per feature: what each must render that the chart defaults do not.
CI_FEATURES = {
    "default-values": lambda o: (
        bool(by_kind(o, "NetworkPolicy")) and not by_kind(o, "HorizontalPodAutoscaler")
    ),
    "autoscaling-values": lambda o: bool(by_kind(o, "HorizontalPodAutoscaler")),
    "pdb-values": lambda o: one(o, "PodDisruptionBudget")["spec"]["minAvailable"] == 2,
    "servicemonitor-values": lambda o: bool(by_kind(o, "ServiceMonitor")),
    "prometheusrule-values": lambda o: bool(by_kind(o, "PrometheusRule")),
    "grafana-dashboard-values": lambda o: any(
        c["metadata"]["labels"].get("grafana_dashboard") == "1" for c in by_kind(o, "ConfigMap")
    ),
    "topology-spread-values": lambda o: bool(_api(o).get("topologySpreadConstraints")),
    "resources-values": lambda o: _api(o)["containers"][0]["resources"]["limits"]["cpu"] == "2",
    "postgresql-values": lambda o: (
        "max_connections=300"
        in one(o, "StatefulSet", "database")["spec"]["template"]["spec"]["containers"][0]["args"]
    ),
    "ingress-values": lambda o: bool(by_kind(o, "Ingress")),
    "backup-values": lambda o: bool(by_kind(o, "CronJob")),
    "cnpg-values": lambda o: bool(by_kind(o, "Cluster")) and not by_kind(o, "Pooler"),
    "cnpg-pooler-values": lambda o: bool(by_kind(o, "Pooler")),
    "external-db-values": lambda o: not by_kind(o, "StatefulSet") and not by_kind(o, "Cluster"),
    "password-env-values": lambda o: (
        not by_kind(o, "NetworkPolicy")
        and any(e["name"] == "DB_PASSWORD" for e in _api(o)["containers"][0]["env"])
    ),
}


def test_one_ci_values_file_per_feature():
    assert sorted(p.stem for p in CI_VALUES) == sorted(CI_FEATURES)
    defaults = render()
    for path in CI_VALUES:
        text = path.read_text()
        assert text.startswith("# "), f"{path.name}: say in a first comment line what it shows"
        shows = CI_FEATURES[path.stem]
        assert shows(render(path)), f"{path.name} does not render its feature"
        if path.stem != "default-values":
            assert not shows(defaults), f"{path.name}: the chart defaults already render this"


def test_schema_describes_every_key_with_the_values_yaml_comment():
    schema = json.loads((CHART / "values.schema.json").read_text())
    comments = value_comments((CHART / "values.yaml").read_text())
    properties = dict(schema_properties(schema))
    assert len(properties) > 150 and "cloudnativepg.pooler.maxClientConnections" in properties
    undescribed = [key for key, sub in properties.items() if not sub.get("description", "").strip()]
    assert not undescribed, f"values.schema.json properties without a description: {undescribed}"
    assert len(comments) > 50 and "config.workers" in comments
    for key, comment in comments.items():
        assert key in properties, f"values.yaml key {key} is not in values.schema.json"
        assert properties[key]["description"] == comment, (
            f"{key}: the schema's description must be the values.yaml comment {comment!r}"
        )


def test_every_template_helper_has_a_one_line_doc_comment():
    helpers = sorted((CHART / "templates").glob("_*.tpl"))
    assert len((CHART / "templates" / "_helpers.tpl").read_text().splitlines()) <= 100
    defines = 0
    for path in helpers:
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines):
            if line.startswith("{{- define "):
                defines += 1
                doc = lines[number - 1] if number else ""
                assert re.fullmatch(r"\{\{/\* \S.* \*/\}\}", doc), (
                    f"{path.name}:{number + 1} {line}: no doc line above"
                )
    assert defines >= 30


# -- labels ---------------------------------------------------------------------------------


def test_standard_labels_on_every_object(scenario):
    _, objects = scenario
    for obj in objects:
        labels = obj["metadata"].get("labels", {})
        missing = [k for k in REQUIRED_LABELS if not labels.get(k)]
        assert not missing, f"{obj['kind']}/{obj['metadata']['name']} lacks {missing}"
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        if obj["kind"] in WORKLOAD_KINDS | {"Service"}:
            assert labels.get("app.kubernetes.io/component"), obj["metadata"]["name"]
        if pod_spec(obj) is not None:
            missing = [k for k in REQUIRED_LABELS if not pod_labels(obj).get(k)]
            assert not missing, f"pods of {obj['kind']}/{obj['metadata']['name']} lack {missing}"


# -- containers -----------------------------------------------------------------------------


def test_every_container_is_hardened_and_bounded(scenario):
    _, objects = scenario
    seen = 0
    for obj in objects:
        spec = pod_spec(obj)
        if spec is None:
            continue
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        assert spec.get("automountServiceAccountToken") is False, where
        psc = spec.get("securityContext", {})
        assert psc.get("runAsNonRoot") is True and isinstance(psc.get("runAsUser"), int), where
        assert psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
        for role, c in containers(obj):
            seen += 1
            name = f"{where} {role} container {c['name']}"
            res = c.get("resources", {})
            assert res.get("requests", {}).get("cpu") and res.get("requests", {}).get("memory"), name
            assert res.get("limits", {}).get("memory") and res.get("limits", {}).get("cpu"), name
            sc = c.get("securityContext", {})
            assert sc.get("runAsNonRoot") is True, name
            assert isinstance(sc.get("runAsUser"), int) and sc["runAsUser"] > 0, name
            assert sc.get("readOnlyRootFilesystem") is True, name
            assert sc.get("allowPrivilegeEscalation") is False, name
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], name
            assert sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", name
            # Kubernetes forbids probes on (non-sidecar) init containers and they mean nothing
            # for run-to-completion pods; every long-running container must have them.
            if role == "main" and obj["kind"] in {"Deployment", "StatefulSet"}:
                assert c.get("livenessProbe") and c.get("readinessProbe"), name
            mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
            if c["image"].startswith("ghcr.io/"):
                assert "/tmp" in mounts, f"{name}: read-only root needs a writable /tmp"
    assert seen >= 3


def test_app_deployment_shape():
    objects = render()
    dep = one(objects, "Deployment", "api")
    spec = dep["spec"]
    assert spec["strategy"]["type"] == "RollingUpdate"
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    tmpl = spec["template"]
    ann = tmpl["metadata"]["annotations"]
    for key in ("checksum/config", "checksum/secret"):
        assert re.fullmatch(r"[0-9a-f]{64}", ann[key]), key
    assert ann["prometheus.io/scrape"] == "true" and ann["prometheus.io/port"] == "8000"
    assert ann["prometheus.io/path"] == "/metrics"
    pod = tmpl["spec"]
    api = next(c for c in pod["containers"] if c["name"] == "api")
    assert api["command"] == ["wiki-service", "serve", "--host", "0.0.0.0", "--port", "8000"]
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["startupProbe"]["httpGet"]["path"] == "/healthz"
    sleep = api["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep" and pod["terminationGracePeriodSeconds"] > int(sleep[1])
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}} in pod["volumes"]
    sa = one(objects, "ServiceAccount")
    assert pod["serviceAccountName"] == sa["metadata"]["name"]
    assert sa["automountServiceAccountToken"] is False
    init = [c["name"] for c in pod.get("initContainers", [])]
    assert init == ["migrate"]


def test_container_port_is_a_value():
    objects = render(sets={"containerPort": 9000})
    dep = one(objects, "Deployment", "api")
    api = next(c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == "api")
    assert api["command"][-2:] == ["--port", "9000"]
    assert api["ports"] == [{"name": "http", "containerPort": 9000, "protocol": "TCP"}]
    assert dep["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == "9000"
    # everything else reaches it by name, so it follows
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert api[probe]["httpGet"]["port"] == "http"
    assert one(objects, "Service", "api")["spec"]["ports"][0]["targetPort"] == "http"
    policy = next(p for p in by_kind(objects, "NetworkPolicy") if p["metadata"]["name"] == FULLNAME)
    assert policy["spec"]["ingress"][0]["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert render_text(sets={"containerPort": 0}, check=False).returncode != 0


def test_postgresql_statefulset_shape():
    objects = render(
        sets={
            "postgresql.maxConnections": 150,
            "postgresql.persistence.size": "3Gi",
            "postgresql.persistence.storageClass": "fast",
        }
    )
    sts = one(objects, "StatefulSet", "database")
    pg = sts["spec"]["template"]["spec"]["containers"][0]
    assert re.fullmatch(r"postgres:16\.\d+-alpine", pg["image"]), pg["image"]
    assert pg["args"][:3] == ["postgres", "-c", "max_connections=150"]
    assert "pg_isready" in " ".join(pg["livenessProbe"]["exec"]["command"])
    assert "pg_isready" in " ".join(pg["readinessProbe"]["exec"]["command"])
    env = {e["name"]: e for e in pg["env"]}
    assert env["PGDATA"]["value"].startswith("/var/lib/postgresql/data/")
    assert env["POSTGRES_PASSWORD_FILE"]["value"].endswith("/password") and "POSTGRES_PASSWORD" not in env
    psc = sts["spec"]["template"]["spec"]["securityContext"]
    assert psc["runAsUser"] == 70 and psc["fsGroup"] == 70
    (vct,) = sts["spec"]["volumeClaimTemplates"]
    assert vct["spec"]["resources"]["requests"]["storage"] == "3Gi"
    assert vct["spec"]["storageClassName"] == "fast"
    headless = [s for s in by_kind(objects, "Service") if s["spec"].get("clusterIP") == "None"]
    assert [s["metadata"]["name"] for s in headless] == [sts["spec"]["serviceName"]]


def test_migrations_run_as_hook_job_and_init_container():
    objects = render()
    job = one(objects, "Job", "migration")
    ann = job["metadata"]["annotations"]
    assert ann["helm.sh/hook"] == "post-install,pre-upgrade"
    assert "before-hook-creation" in ann["helm.sh/hook-delete-policy"]
    assert "helm.sh/hook-weight" in ann
    (c,) = job["spec"]["template"]["spec"]["containers"]
    assert c["command"][-1].rstrip().endswith("exec wiki-service db upgrade")
    # the Job cannot rely on the ConfigMap in pre-upgrade: its env is inline and matches it
    cm = one(objects, "ConfigMap", "api")["data"]
    inline = {e["name"]: e["value"] for e in c["env"] if "value" in e}
    assert {k: inline[k] for k in cm} == cm
    dep = one(objects, "Deployment", "api")
    init = dep["spec"]["template"]["spec"]["initContainers"][0]
    assert init["command"] == c["command"]
    assert init == c, "the init container and the Job's container are one template"


# -- configuration and secrets --------------------------------------------------------------


def _secret_password(objects: list[dict]) -> str:
    return base64.b64decode(one(objects, "Secret")["data"]["password"]).decode()


def test_no_password_in_any_configmap(scenario):
    _, objects = scenario
    passwords = {
        base64.b64decode(v).decode() for s in by_kind(objects, "Secret") for v in s.get("data", {}).values()
    }
    for cm in by_kind(objects, "ConfigMap"):
        data = cm.get("data", {})
        name = cm["metadata"]["name"]
        assert not any("PASSWORD" in k.upper() for k in data if k != "wiki-service.json"), name
        text = json.dumps(data)
        for pw in passwords:
            assert pw not in text, f"password leaked into ConfigMap {cm['metadata']['name']}"
        assert "DATABASE_URL" not in data


def test_generated_password_is_random_and_never_postgres():
    first, second = _secret_password(render()), _secret_password(render())
    for pw in (first, second):
        assert len(pw) == 32 and set(pw) <= set(string.ascii_letters + string.digits)
        assert pw != "postgres"
    assert first != second, "without a live Secret (lookup) every render must generate a new password"
    template = (CHART / "templates" / "secret.yaml").read_text()
    assert 'lookup "v1" "Secret"' in template and "randAlphaNum 32" in template
    assert one(render(), "Secret")["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_password_value_and_existing_secret():
    assert _secret_password(render(sets={"postgresql.auth.password": "s3cr3t-value"})) == "s3cr3t-value"
    proc = render_text(sets={"postgresql.auth.password": "postgres"}, check=False)
    assert proc.returncode != 0
    sets = {"postgresql.auth.existingSecret": "mine", "postgresql.auth.existingSecretPasswordKey": "pw"}
    objects = render(sets=sets)
    assert not by_kind(objects, "Secret")
    pod = one(objects, "Deployment", "api")["spec"]["template"]["spec"]
    (vol,) = [v for v in pod["volumes"] if "secret" in v]
    assert vol["secret"]["secretName"] == "mine" and vol["secret"]["items"] == [{"key": "pw", "path": "pw"}]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["DB_PASSWORD_FILE"]["value"].endswith("/pw")
    objects = render(sets={**sets, "database.passwordAsFile": False})
    api = one(objects, "Deployment", "api")["spec"]["template"]["spec"]["containers"][0]
    ref = next(e for e in api["env"] if e["name"] == "DB_PASSWORD")["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "mine", "key": "pw"}


def test_password_is_a_mounted_file_by_default():
    objects = render()
    pod = one(objects, "Deployment", "api")["spec"]["template"]["spec"]
    vol = next(v for v in pod["volumes"] if "secret" in v)
    assert vol["secret"]["secretName"] == one(objects, "Secret")["metadata"]["name"]
    for c in pod["containers"] + pod["initContainers"]:
        env = {e["name"]: e for e in c["env"]}
        assert "DB_PASSWORD" not in env
        mount = next(m for m in c["volumeMounts"] if m["name"] == vol["name"])
        assert mount["readOnly"] is True
        assert env["DB_PASSWORD_FILE"]["value"] == f"{mount['mountPath']}/password"
    # the bundled PostgreSQL reads the same file (the official image's POSTGRES_PASSWORD_FILE)
    pg = one(objects, "StatefulSet", "database")["spec"]["template"]["spec"]
    env = {e["name"]: e for e in pg["containers"][0]["env"]}
    assert "POSTGRES_PASSWORD" not in env
    mount = next(m for m in pg["containers"][0]["volumeMounts"] if m["name"] == vol["name"])
    assert env["POSTGRES_PASSWORD_FILE"]["value"] == f"{mount['mountPath']}/password"
    assert vol in pg["volumes"]


def test_password_as_env_var_when_asked():
    objects = render(CHART / "ci" / "password-env-values.yaml")
    secret = one(objects, "Secret")["metadata"]["name"]
    for obj in objects:
        for _, c in containers(obj):
            names = {e["name"] for e in c.get("env", [])}
            assert not {"DB_PASSWORD_FILE", "POSTGRES_PASSWORD_FILE"} & names, obj["metadata"]["name"]
    api = one(objects, "Deployment", "api")["spec"]["template"]["spec"]["containers"][0]
    ref = next(e for e in api["env"] if e["name"] == "DB_PASSWORD")["valueFrom"]["secretKeyRef"]
    assert ref == {"name": secret, "key": "password"}


def test_db_host_names_the_postgresql_service(scenario):
    values_file, objects = scenario
    cm = one(objects, "ConfigMap", "api")["data"]
    external = values_file is not None and values_file.stem == "external-db-values"
    clusters = by_kind(objects, "Cluster")
    if clusters:
        # CloudNativePG: its Services are created by the operator, so they are not rendered
        cluster = clusters[0]["metadata"]["name"]
        poolers = by_kind(objects, "Pooler")
        if poolers:
            assert cm["DB_HOST"] == poolers[0]["metadata"]["name"]
            assert poolers[0]["spec"]["cluster"]["name"] == cluster and poolers[0]["spec"]["type"] == "rw"
        else:
            assert cm["DB_HOST"] == f"{cluster}-rw"
        assert cm["DB_PORT"] == "5432"
        assert not by_kind(objects, "StatefulSet")
    elif external:
        config = yaml.safe_load(values_file.read_text())["externalDatabase"]
        assert cm["DB_HOST"] == config["host"] and cm["DB_PORT"] == str(config["port"])
        assert not by_kind(objects, "StatefulSet")
    else:
        svc = next(s for s in by_kind(objects, "Service") if s["metadata"]["name"] == cm["DB_HOST"])
        assert svc["spec"].get("clusterIP") != "None"
        assert svc["spec"]["selector"] == one(objects, "StatefulSet")["spec"]["selector"]["matchLabels"]
        assert cm["DB_PORT"] == str(svc["spec"]["ports"][0]["port"])


def test_external_database_requires_host_and_password():
    proc = render_text(sets={"postgresql.enabled": False, "externalDatabase.password": "x"}, check=False)
    assert proc.returncode != 0 and "externalDatabase.host is required" in proc.stderr
    proc = render_text(sets={"postgresql.enabled": False, "externalDatabase.host": "db"}, check=False)
    assert proc.returncode != 0
    assert "externalDatabase.password or externalDatabase.existingSecret" in proc.stderr


# -- services -------------------------------------------------------------------------------


def _matches(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _selects(selector: dict, labels: dict) -> bool:
    """A LabelSelector (matchLabels and the In/NotIn/Exists operators of matchExpressions)."""
    for expr in selector.get("matchExpressions", []):
        value, values = labels.get(expr["key"]), expr.get("values", [])
        ok = {
            "In": value in values,
            "NotIn": value not in values,
            "Exists": value is not None,
            "DoesNotExist": value is None,
        }[expr["operator"]]
        if not ok:
            return False
    return _matches(selector.get("matchLabels", {}), labels)


def test_every_service_selects_one_workload_and_a_real_port(scenario):
    _, objects = scenario
    # test pods and hook Jobs are workloads too: a Service must not pick them up
    workloads = [o for o in objects if pod_spec(o) is not None]
    for svc in by_kind(objects, "Service"):
        selector = svc["spec"]["selector"]
        assert selector, svc["metadata"]["name"]
        picked = [w for w in workloads if _matches(selector, pod_labels(w))]
        assert len(picked) == 1, (svc["metadata"]["name"], [w["metadata"]["name"] for w in picked])
        ports = [p for _, c in containers(picked[0]) for p in c.get("ports", [])]
        for sp in svc["spec"]["ports"]:
            target = sp["targetPort"]
            assert any(p.get("name") == target or p["containerPort"] == target for p in ports), (
                f"Service {svc['metadata']['name']} targets {target!r}, "
                f"not a port of {picked[0]['metadata']['name']}"
            )


def test_ingress_routes_to_the_api_service():
    objects = render(CHART / "ci" / "ingress-values.yaml")
    ing = one(objects, "Ingress")
    assert ing["spec"]["ingressClassName"] == "nginx"
    assert ing["spec"]["tls"][0]["hosts"] == ["wiki.example.com"]
    backend = ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    svc = one(objects, "Service", "api")
    assert backend["name"] == svc["metadata"]["name"] and backend["port"]["name"] == "http"


# -- scaling, disruption, network -----------------------------------------------------------


@pytest.mark.parametrize(
    "sets,expected",
    [
        ({}, True),
        ({"replicaCount": 1}, False),
        ({"replicaCount": 1, "podDisruptionBudget.enabled": True}, True),
        ({"replicaCount": 3, "podDisruptionBudget.enabled": False}, False),
        ({"replicaCount": 1, "autoscaling.enabled": True, "autoscaling.minReplicas": 1}, False),
        ({"replicaCount": 1, "autoscaling.enabled": True, "autoscaling.minReplicas": 2}, True),
    ],
)
def test_pdb_follows_effective_replicas(sets, expected):
    assert bool(by_kind(render(sets=sets), "PodDisruptionBudget")) is expected


def test_hpa_owns_replicas():
    objects = render(CHART / "ci" / "autoscaling-values.yaml")
    hpa = one(objects, "HorizontalPodAutoscaler")
    dep = one(objects, "Deployment", "api")
    assert "replicas" not in dep["spec"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 6)


def test_postgresql_accepts_only_app_migration_and_backup_pods():
    objects = render(CHART / "ci" / "backup-values.yaml", {"backup.restore.enabled": True})
    sts = one(objects, "StatefulSet", "database")
    (policy,) = [
        p for p in by_kind(objects, "NetworkPolicy") if _selects(p["spec"]["podSelector"], pod_labels(sts))
    ]
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    allowed = [peer["podSelector"]["matchLabels"] for peer in rule["from"]]
    assert all(set(peer) == {"podSelector"} for peer in rule["from"])
    for obj in objects:
        if pod_spec(obj) is None or obj is sts:
            continue
        admitted = any(_matches(sel, pod_labels(obj)) for sel in allowed)
        component = pod_labels(obj)["app.kubernetes.io/component"]
        assert admitted == (component in {"api", "migration", "backup"}), obj["metadata"]["name"]
    assert {"backup"} <= {pod_labels(o)["app.kubernetes.io/component"] for o in objects if pod_spec(o)}
    assert rule["ports"] == [{"port": "postgresql", "protocol": "TCP"}]


def test_network_policy_on_by_default_and_ingress_only():
    objects = render()
    policies = by_kind(objects, "NetworkPolicy")
    for policy in policies:
        # no egress rules: DNS, an external database and the operator keep working
        assert policy["spec"]["policyTypes"] == ["Ingress"]
    # every pod of the release is covered; each by exactly one policy
    for obj in objects:
        if pod_spec(obj) is None:
            continue
        covering = [p for p in policies if _selects(p["spec"]["podSelector"], pod_labels(obj))]
        assert len(covering) == 1, (obj["metadata"]["name"], [p["metadata"]["name"] for p in covering])
        component = pod_labels(obj)["app.kubernetes.io/component"]
        if component in {"migration", "test"}:
            assert not covering[0]["spec"].get("ingress"), "pods that serve nothing accept nothing"
        if component == "api":
            # the API port is open to any peer unless apiIngressFrom narrows it
            assert covering[0]["spec"]["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}]}]
    extra = {"podSelector": {"matchLabels": {"app": "exporter"}}}
    objects = render(sets={"networkPolicy.databaseIngressFrom[0].podSelector.matchLabels.app": "exporter"})
    db = next(p for p in by_kind(objects, "NetworkPolicy") if p["metadata"]["name"].endswith("-postgresql"))
    assert extra in db["spec"]["ingress"][0]["from"]
    assert not by_kind(render(CHART / "ci" / "password-env-values.yaml"), "NetworkPolicy")


# -- connection budget ----------------------------------------------------------------------


def test_connection_budget_fails_with_a_clear_message():
    proc = render_text(sets={"replicaCount": 10}, check=False)
    assert proc.returncode != 0
    assert "connection budget exceeded" in proc.stderr and "postgresql.maxConnections" in proc.stderr
    # autoscaling counts maxReplicas, and workers multiply the pools
    assert (
        render_text(
            sets={"replicaCount": 1, "autoscaling.enabled": True, "autoscaling.maxReplicas": 12}, check=False
        ).returncode
        != 0
    )
    assert render_text(sets={"config.workers": 4}, check=False).returncode != 0
    proc = render_text(CHART / "ci" / "external-db-values.yaml", sets={"replicaCount": 6}, check=False)
    assert "externalDatabase.maxConnections" in proc.stderr


def test_connection_budget_arithmetic():
    # 2 replicas + 1 surge = 3 pods x (10 + 10) x 1 worker + 3 init containers + 1 Job = 64
    assert render_text(sets={"postgresql.maxConnections": 74}, check=False).returncode == 0
    proc = render_text(sets={"postgresql.maxConnections": 73}, check=False)
    assert proc.returncode != 0 and "= 64" in proc.stderr
    # a percentage surge rounds up: ceil(2 * 25%) = 1 -> same total
    assert (
        render_text(
            sets={"postgresql.maxConnections": 74, "strategy.maxSurge": "25%"}, check=False
        ).returncode
        == 0
    )
    # a backup CronJob holds one more connection while it runs
    proc = render_text(sets={"postgresql.maxConnections": 74, "backup.enabled": True}, check=False)
    assert proc.returncode != 0 and "= 65" in proc.stderr


def test_default_external_database_install_renders():
    """The install most users try first (issue 14): a stock PostgreSQL (max_connections 100,
    superuser_reserved_connections 3) and a Secret they made."""
    sets = {
        "postgresql.enabled": False,
        "externalDatabase.host": "db.example.internal",
        "externalDatabase.existingSecret": "wiki-db",
    }
    objects = render(sets=sets)
    cm = one(objects, "ConfigMap", "api")["data"]
    assert cm["DB_HOST"] == "db.example.internal"
    values = yaml.safe_load((CHART / "values.yaml").read_text())["externalDatabase"]
    assert (values["maxConnections"], values["reservedConnections"]) == (100, 3)
    # the defaults leave room: one more replica (4 pods at peak) still fits in 97
    assert render_text(sets={**sets, "replicaCount": 3}, check=False).returncode == 0


# -- observability --------------------------------------------------------------------------

COUNTERS = [
    "users_created_total",
    "posts_created_total",
    "http_requests_total",
    "http_request_duration_seconds_bucket",
]


def _dashboard() -> dict:
    objects = render(CHART / "ci" / "grafana-dashboard-values.yaml")
    cms = [
        c for c in by_kind(objects, "ConfigMap") if c["metadata"]["labels"].get("grafana_dashboard") == "1"
    ]
    assert len(cms) == 1
    return json.loads(cms[0]["data"]["wiki-service.json"])


def _exprs(dashboard: dict) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_dashboard_uses_rate_or_increase_on_counters():
    exprs = _exprs(_dashboard())
    joined = "\n".join(exprs)
    for name in ("users_created_total", "posts_created_total", "http_requests_total"):
        assert name in joined
    for expr in exprs:
        for name in COUNTERS:
            for m in re.finditer(rf"\b{name}\b", expr):
                before = expr[: m.start()]
                assert re.search(r"\b(rate|increase|irate)\(\s*$", before), f"raw counter {name} in {expr!r}"
    p99 = [e for e in exprs if "histogram_quantile(0.99" in e]
    assert p99 and all("rate(http_request_duration_seconds_bucket" in e for e in p99)
    assert any('status=~"5.."' in e for e in exprs)


def test_prometheus_rules_and_servicemonitor():
    objects = render(CHART / "ci" / "servicemonitor-values.yaml")
    sm = one(objects, "ServiceMonitor")
    svc = one(objects, "Service", "api")
    assert _matches(sm["spec"]["selector"]["matchLabels"], svc["metadata"]["labels"])
    assert sm["spec"]["endpoints"][0]["port"] == "http" and sm["spec"]["endpoints"][0]["path"] == "/metrics"
    prometheus_rule = one(render(CHART / "ci" / "prometheusrule-values.yaml"), "PrometheusRule")
    rules = prometheus_rule["spec"]["groups"][0]["rules"]
    alerts = {r["alert"]: r["expr"] for r in rules}
    assert {"WikiServiceHigh5xxRatio", "WikiServiceHighP99Latency", "WikiServiceNoReadyPods"} <= set(alerts)
    assert "histogram_quantile(0.99" in alerts["WikiServiceHighP99Latency"]
    for expr in alerts.values():
        assert f'namespace="{NAMESPACE}"' in expr


def test_notes_tell_how_to_reach_the_api_and_read_the_password():
    proc = helm("install", RELEASE, str(CHART), "--dry-run=client", "--namespace", NAMESPACE)
    notes = proc.stdout.split("NOTES:", 1)[1]
    assert f"port-forward svc/{FULLNAME}" in notes
    assert f"get secret {FULLNAME}" in notes and "base64 -d" in notes
    assert f"helm test {RELEASE}" in notes
