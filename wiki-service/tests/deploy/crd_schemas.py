"""Validation of rendered custom resources against the openAPIV3Schema of their CRDs.

The CRDs are the upstream copies in shared/crds beside the repository (ROOT/../shared/crds; for a
git worktree, beside the main checkout). Validation is strict like `kubectl apply
--validate=strict`: an unknown field fails, where a cluster would silently prune it.
"""

from __future__ import annotations

import copy
import os
import subprocess
from functools import cache
from pathlib import Path

import jsonschema
import pytest
import yaml

from deploy_helpers import REPO


def crd_dir() -> Path:
    """$SHARED_CRDS, else ROOT/../shared/crds, else the same beside the main worktree; else FAIL."""
    candidates = [os.environ.get("SHARED_CRDS"), REPO.parent / "shared" / "crds"]
    common = subprocess.run(
        ["git", "rev-parse", "--path-format=absolute", "--git-common-dir"],
        cwd=REPO,
        capture_output=True,
        text=True,
    ).stdout.strip()
    if common:
        candidates.append(Path(common).parent.parent / "shared" / "crds")
    for candidate in candidates:
        if candidate and Path(candidate, "postgresql.cnpg.io_clusters.yaml").is_file():
            return Path(candidate)
    pytest.fail(
        f"CRDs not found in any of {[str(c) for c in candidates if c]}: set SHARED_CRDS", pytrace=False
    )


def _strict(schema: dict) -> dict:
    """Copy of schema in which every object with declared properties refuses unknown ones
    (unless the CRD says x-kubernetes-preserve-unknown-fields)."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if (
                "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


@cache
def validators() -> dict[tuple[str, str], jsonschema.Draft7Validator]:
    """(apiVersion, kind) -> validator, for every served version of every CRD."""
    found = {}
    for path in sorted(crd_dir().glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        if not crd or crd.get("kind") != "CustomResourceDefinition":
            continue
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version.get("served"):
                schema = _strict(version["schema"]["openAPIV3Schema"])
                found[(f"{group}/{version['name']}", kind)] = jsonschema.Draft7Validator(schema)
    return found


def crd_errors(obj: dict) -> list[str]:
    """Why obj does not validate against its CRD (empty when it does)."""
    validator = validators().get((obj["apiVersion"], obj["kind"]))
    if validator is None:
        return [f"no CRD serves {obj['apiVersion']} {obj['kind']}"]
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(obj)
    ]
