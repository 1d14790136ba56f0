"""The image, the workflows and the compose stack: linters and structure."""

from __future__ import annotations

import re
import subprocess

import yaml

from deploy_helpers import REPO, find_tool

SERVICE = REPO / "wiki-service"


def test_hadolint_clean():
    hadolint = find_tool("hadolint", "HADOLINT")
    proc = subprocess.run([hadolint, "--no-color", str(SERVICE / "Dockerfile")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dockerfile_contract():
    text = (SERVICE / "Dockerfile").read_text()
    froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert len(froms) >= 2, "multi-stage build"
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)", text, re.M).group(1)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", base), base
    # dependencies layer before the source
    assert text.index("COPY requirements.txt") < text.index("COPY app")
    uid = re.search(r"^ARG APP_UID=(\d+)", text, re.M).group(1)
    assert int(uid) >= 10000
    assert re.search(r"^USER \$\{APP_UID\}:\$\{APP_UID\}$", text, re.M)
    assert "PYTHONDONTWRITEBYTECODE=1" in text
    assert 'CMD ["wiki-service", "serve", "--host", "0.0.0.0", "--port", "8000"]' in text
    healthcheck = re.search(r"^HEALTHCHECK .*?CMD (\[.*\])$", text, re.M | re.S).group(1)
    assert "urllib" in healthcheck and "/healthz" in healthcheck and "curl" not in healthcheck
    ignored = (SERVICE / ".dockerignore").read_text().split()
    assert "*" in ignored and "!app/" in ignored  # allow-list: no tests, venvs or .env in the context


def test_actionlint_clean():
    actionlint = find_tool("actionlint", "ACTIONLINT")
    workflows = sorted((REPO / ".github" / "workflows").glob("*.y*ml"))
    assert workflows
    proc = subprocess.run([actionlint, *map(str, workflows)], capture_output=True, text=True,
                          timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _workflow(name: str) -> dict:
    return yaml.safe_load((REPO / ".github" / "workflows" / name).read_text())


def _steps(workflow: dict) -> list[dict]:
    return [s for job in workflow["jobs"].values() for s in job.get("steps", [])]


def test_workflows_contract():
    ci, release = _workflow("ci.yml"), _workflow("release.yml")
    on = ci[True]  # PyYAML reads the key `on` as a boolean
    assert "push" in on and "pull_request" in on
    assert any(s.get("run", "").strip() == "bash scripts/test" for s in _steps(ci))
    assert release[True]["push"]["tags"] == ["v*"]
    uses = [s["uses"] for s in _steps(ci) + _steps(release) if "uses" in s]
    for action in uses:
        assert re.search(r"@v\d+\.\d+\.\d+$", action), f"{action} is not pinned to a version"
    names = {u.split("@")[0] for u in uses}
    assert {"docker/build-push-action", "docker/metadata-action", "docker/login-action"} <= names
    image = release["jobs"]["image"]
    assert image["permissions"]["packages"] == "write"
    login = next(s for s in image["steps"] if s.get("uses", "").startswith("docker/login-action"))
    assert login["with"]["registry"] == "ghcr.io" and "GITHUB_TOKEN" in login["with"]["password"]
    chart_runs = " ".join(s.get("run", "") for s in release["jobs"]["chart"]["steps"])
    assert "helm package" in chart_runs


def test_compose_structure():
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    services = compose["services"]
    db, migrate, api = services["db"], services["migrate"], services["api"]
    assert db["image"].startswith("postgres:16") and db["image"].endswith("-alpine")
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    assert any(v.endswith(":/var/lib/postgresql/data") for v in db["volumes"])
    assert set(compose["volumes"]) >= {v.split(":")[0] for v in db["volumes"]}
    for key in ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"):
        assert db["environment"][key].startswith("${"), f"{key} must come from .env"
    assert migrate["command"] == ["wiki-service", "db", "upgrade"]
    assert migrate["depends_on"]["db"]["condition"] == "service_healthy"
    assert api["depends_on"]["db"]["condition"] == "service_healthy"
    assert api["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    for svc in (migrate, api):
        assert svc["env_file"] == [".env"]
        assert svc["environment"]["DB_HOST"] == "db"
        assert svc["read_only"] is True and "/tmp" in svc["tmpfs"]
    assert "8000" in api["ports"][0]


def test_env_example_matches_compose_and_secrets_stay_untracked():
    example = dict(line.split("=", 1) for line in (REPO / ".env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    for key in ("DB_USER", "DB_PASSWORD", "DB_NAME"):
        assert example.get(key), key
    assert example["DB_PASSWORD"] != "postgres"
    ignored = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=REPO).returncode == 0
    assert ignored, ".env must be gitignored"


def test_fetch_helm_is_idempotent():
    script = REPO / "scripts" / "fetch-helm"
    assert script.read_text().startswith("#!/usr/bin/env bash")
    # with the tools present (the other tests needed them) a second run only checks them
    subprocess.run(["bash", str(script)], check=True, timeout=300)
    proc = subprocess.run(["bash", "-x", str(script)], capture_output=True, text=True, timeout=60, check=True)
    assert "npm pack" not in proc.stderr
