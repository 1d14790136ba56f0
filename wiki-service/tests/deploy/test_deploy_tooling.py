"""The image, the workflows and the compose stack: linters and structure."""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
import zipfile

import yaml

from deploy_helpers import REPO, find_tool

SERVICE = REPO / "wiki-service"


def test_hadolint_clean():
    hadolint = find_tool("hadolint", "HADOLINT")
    proc = subprocess.run(
        [hadolint, "--no-color", str(SERVICE / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dockerfile_contract():
    text = (SERVICE / "Dockerfile").read_text()
    froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert len(froms) >= 2, "multi-stage build"
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)", text, re.M).group(1)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", base), base
    # dependencies layer before the source
    assert text.index("COPY requirements.lock") < text.index("COPY app")
    uid = re.search(r"^ARG APP_UID=(\d+)", text, re.M).group(1)
    assert int(uid) >= 10000
    assert re.search(r"^USER \$\{APP_UID\}:\$\{APP_UID\}$", text, re.M)
    assert "PYTHONDONTWRITEBYTECODE=1" in text
    # serve takes HOST and PORT from the environment; the HEALTHCHECK probes that PORT
    assert 'CMD ["wiki-service", "serve"]' in text
    assert re.search(r"^    HOST=0\.0\.0\.0 \\$", text, re.M) and re.search(r"^    PORT=8000$", text, re.M)
    healthcheck = re.search(r"^HEALTHCHECK .*?CMD (\[.*\])$", text, re.M | re.S).group(1)
    assert "urllib" in healthcheck and "/healthz" in healthcheck and "curl" not in healthcheck
    assert "os.environ.get('PORT')" in healthcheck and ":8000/" not in healthcheck
    # dependencies come from the hash-locked file
    assert "--require-hashes" in text and "-r requirements.lock" in text
    ignored = (SERVICE / ".dockerignore").read_text().split()
    assert "*" in ignored and "!app/" in ignored  # allow-list: no tests, venvs or .env in the context


def test_actionlint_clean():
    actionlint = find_tool("actionlint", "ACTIONLINT")
    workflows = sorted((REPO / ".github" / "workflows").glob("*.y*ml"))
    assert workflows
    proc = subprocess.run(
        [actionlint, *map(str, workflows)], capture_output=True, text=True, timeout=120, cwd=REPO
    )
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
    texts = "".join((REPO / ".github" / "workflows" / name).read_text() for name in ("ci.yml", "release.yml"))
    for action in uses:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", action), f"{action} is not pinned to a commit"
        tagged = re.search(rf"uses: {re.escape(action)} # v\d+\.\d+\.\d+$", texts, re.M)
        assert tagged, f"{action}: no tag comment"
    names = {u.split("@")[0] for u in uses}
    assert {"docker/build-push-action", "docker/metadata-action", "docker/login-action"} <= names
    image = release["jobs"]["image"]
    assert image["permissions"]["packages"] == "write"
    login = next(s for s in image["steps"] if s.get("uses", "").startswith("docker/login-action"))
    assert login["with"]["registry"] == "ghcr.io" and "GITHUB_TOKEN" in login["with"]["password"]
    image_runs = " ".join(s.get("run", "") for s in image["steps"])
    assert 'docker pull "${REPOSITORY}@${DIGEST}"' in image_runs
    assert release["jobs"]["chart"]["needs"] == "image"
    chart_runs = " ".join(s.get("run", "") for s in release["jobs"]["chart"]["steps"])
    assert "helm package" in chart_runs and 'helm push dist/*.tgz "oci://ghcr.io/' in chart_runs
    assert 'helm template wiki "oci://ghcr.io/' in chart_runs and "image.digest=${DIGEST}" in chart_runs
    # the release rewrites image.repository with sed: the pattern must hit that line only
    values = (REPO / "charts" / "wiki-service" / "values.yaml").read_text()
    assert "s#^  repository: .*#" in chart_runs
    hits = re.findall(r"^  repository: .*$", values, re.M)
    assert len(hits) == 1 and yaml.safe_load(values)["image"]["repository"] in hits[0]


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
    example = dict(
        line.split("=", 1)
        for line in (REPO / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
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


def _dockerignored(path: str, rules: list[str]) -> bool:
    """Docker's .dockerignore semantics, enough for this file: last matching rule wins and a
    rule matching a parent directory matches everything below it."""
    parts = path.split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    ignored = False
    for rule in rules:
        negate = rule.startswith("!")
        pattern = rule.lstrip("!").rstrip("/")
        variants = {pattern, pattern.replace("**/", "")}
        if any(fnmatch.fnmatchcase(c, v) for c in candidates for v in variants):
            ignored = not negate
    return ignored


def test_image_build_context_installs(tmp_path):
    """Replays the builder stage on the files .dockerignore lets into the context."""
    rules = [
        line.strip()
        for line in (SERVICE / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    tracked = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=SERVICE,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    context = tmp_path / "context"
    kept = [p for p in tracked if not _dockerignored(p, rules)]
    assert not [p for p in kept if p.startswith(("tests/", ".venv", ".env"))]
    for rel in kept:
        (context / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(SERVICE / rel, context / rel)
    dockerfile = (SERVICE / "Dockerfile").read_text()
    for source in re.findall(r"^COPY (?!--from)(\S+)", dockerfile, re.M):
        assert (context / source).exists(), f"COPY {source}: not in the build context"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "-w",
            str(tmp_path / "out"),
            str(context),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (wheel,) = (tmp_path / "out").glob("wiki_service-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "app/migrations/env.py" in names and "app/migrations/script.py.mako" in names
    assert any(n.startswith("app/migrations/versions/") and n.endswith(".py") for n in names)
    assert not any(n.startswith("tests/") for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "wiki-service = app.__main__:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_lock_pins_every_requirement_within_its_minimum_with_hashes():
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    lock = (SERVICE / "requirements.lock").read_text()
    entries = re.findall(r"^([A-Za-z0-9._-]+)==(\S+)((?: \\\n +--hash=sha256:[0-9a-f]{64})+)", lock, re.M)
    assert len(entries) == len(re.findall(r"^\S+==", lock, re.M)), "every pin carries its hashes"
    pinned = {canonicalize_name(name): version for name, version, _ in entries}
    for line in (SERVICE / "requirements.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            requirement = Requirement(line)
            version = pinned.get(canonicalize_name(requirement.name))
            assert version and requirement.specifier.contains(version), (line, version)
