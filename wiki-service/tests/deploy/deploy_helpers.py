"""Shared helpers for the deployment tests: locating tools, rendering the chart, walking objects."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "charts" / "wiki-service"
CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))
RELEASE = "wiki"
NAMESPACE = "wiki-test"

# kinds whose schemas are CRDs, not part of Kubernetes: kubernetes-validate has none for them
CRD_KINDS = {"ServiceMonitor", "PrometheusRule", "PodMonitor", "Cluster", "Pooler", "ScheduledBackup"}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "Job", "CronJob", "Pod"}


def find_tool(name: str, env_var: str) -> str:
    """$ENV_VAR, else `name` on PATH or beside this Python, else <repo>/.tools/bin/name; else FAIL."""
    candidates = [
        os.environ.get(env_var),
        shutil.which(name),
        str(Path(sys.executable).parent / name),
        str(REPO / ".tools" / "bin" / name),
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(
        f"{name} not found: set {env_var}, put {name} on PATH, or run `bash scripts/fetch-helm` "
        f"(installs helm, kubectl and actionlint into {REPO / '.tools' / 'bin'})",
        pytrace=False,
    )


def helm_bin() -> str:
    return find_tool("helm", "HELM")


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([helm_bin(), *args], capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        pytest.fail(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}", pytrace=False)
    return proc


def values_args(values_file: Path | None = None, sets: dict[str, Any] | None = None) -> list[str]:
    args: list[str] = []
    if values_file is not None:
        args += ["-f", str(values_file)]
    for key, value in (sets or {}).items():
        flag = "--set-string" if isinstance(value, str) else "--set"
        if isinstance(value, bool):
            value = str(value).lower()
        args += [flag, f"{key}={value}"]
    return args


def render_text(
    values_file: Path | None = None,
    sets: dict[str, Any] | None = None,
    *,
    check: bool = True,
    show_only: str | None = None,
) -> subprocess.CompletedProcess[str]:
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE, *values_args(values_file, sets)]
    if show_only:
        args += ["--show-only", show_only]
    return helm(*args, check=check)


def render(values_file: Path | None = None, sets: dict[str, Any] | None = None) -> list[dict]:
    """All objects `helm template` renders (hooks and test pods included)."""
    docs = yaml.safe_load_all(render_text(values_file, sets).stdout)
    return [d for d in docs if d]


def by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict], kind: str, component: str | None = None) -> dict:
    found = [
        o
        for o in by_kind(objects, kind)
        if component is None or o["metadata"]["labels"].get("app.kubernetes.io/component") == component
    ]
    assert len(found) == 1, f"expected one {kind} (component={component}), got {len(found)}"
    return found[0]


def pod_spec(obj: dict) -> dict | None:
    if obj["kind"] in {"Pod", "Deployment", "StatefulSet", "Job", "CronJob", "DaemonSet", "ReplicaSet"}:
        return pod_template(obj)["spec"]
    return None


def pod_template(obj: dict) -> dict:
    """The pod (template) of a workload: the object itself for a Pod."""
    if obj["kind"] == "Pod":
        return obj
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]
    return obj["spec"]["template"]


def pod_labels(obj: dict) -> dict:
    return pod_template(obj)["metadata"].get("labels", {})


def containers(obj: dict) -> Iterator[tuple[str, dict]]:
    """(kind of container, container) for regular and init containers of a workload."""
    spec = pod_spec(obj)
    if spec is None:
        return
    for c in spec.get("initContainers", []):
        yield "init", c
    for c in spec.get("containers", []):
        yield "main", c


def scenario_id(path: Path | None) -> str:
    return "chart-defaults" if path is None else path.stem


def resolve_env(pod: dict, container: dict, objects: list[dict], volume_root: Path) -> dict[str, str]:
    """The container's environment as the kubelet would build it from the rendered objects,
    with its volumes as directories under volume_root."""
    configmaps = {c["metadata"]["name"]: c.get("data", {}) for c in by_kind(objects, "ConfigMap")}
    secrets = {
        s["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in s.get("data", {}).items()}
        for s in by_kind(objects, "Secret")
    }
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            data = configmaps[source["configMapRef"]["name"]]
        else:
            data = secrets[source["secretRef"]["name"]]
        env.update({prefix + k: v for k, v in data.items()})
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = str(var["value"])
            continue
        ref = var["valueFrom"]
        if "configMapKeyRef" in ref:
            env[var["name"]] = configmaps[ref["configMapKeyRef"]["name"]][ref["configMapKeyRef"]["key"]]
        elif "secretKeyRef" in ref:
            env[var["name"]] = secrets[ref["secretKeyRef"]["name"]][ref["secretKeyRef"]["key"]]
        else:
            pytest.fail(f"unsupported valueFrom in {var}")
    # Volumes become local directories: Secret volumes hold their files, a PVC is the same
    # directory for every pod that claims it; env values under a mount path are rewritten.
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    declared = dict(env)  # rewrite each value once, from what the manifest says
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "persistentVolumeClaim" in volume:
            local = volume_root / "pvc" / volume["persistentVolumeClaim"]["claimName"]
        else:
            local = volume_root / mount["name"]
        local.mkdir(parents=True, exist_ok=True)
        secret = volume.get("secret")
        if secret is not None:
            data = secrets[secret["secretName"]]
            items = secret.get("items") or [{"key": k, "path": k} for k in data]
            for item in items:
                (local / item["path"]).write_text(data[item["key"]])
        for name, value in declared.items():
            if value == mount["mountPath"] or value.startswith(mount["mountPath"].rstrip("/") + "/"):
                env[name] = str(local) + value[len(mount["mountPath"].rstrip("/")) :]
    return env


def value_comments(text: str) -> dict[str, str]:
    """{dotted key: text} for each key of a values.yaml with comment lines right above it, at its
    indentation (a blank line or a deeper comment in between detaches them)."""
    comments: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    pending: list[tuple[int, str]] = []
    for line in text.splitlines():
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if stripped.startswith("#"):
            pending.append((indent, stripped[1:].strip()))
            continue
        key = re.match(r"\s*([A-Za-z0-9_]+):", line)
        if key:
            while stack and stack[-1][0] >= indent:
                stack.pop()
            stack.append((indent, key.group(1)))
            if pending and all(i == indent for i, _ in pending):
                comments[".".join(k for _, k in stack)] = " ".join(t for _, t in pending)
        pending = []
    return comments


def schema_properties(node: dict, path: str = "") -> Iterator[tuple[str, dict]]:
    """(dotted key, schema) for every property of a JSON schema, list items as `[]`."""
    for key, sub in node.get("properties", {}).items():
        yield path + key, sub
        yield from schema_properties(sub, f"{path}{key}.")
    if isinstance(node.get("items"), dict):
        yield from schema_properties(node["items"], f"{path}[].")
