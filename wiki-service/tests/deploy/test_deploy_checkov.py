"""checkov on the chart's default render: every finding is fixed or kept on purpose below, with
the reason (charts/wiki-service/README.md, "checkov findings kept", says the same)."""

from __future__ import annotations

import json
import subprocess

from deploy_helpers import CHART, find_tool, render, render_text

# check id -> (kinds it may fire on, why it stays)
KEPT = {
    "CKV_K8S_15": (
        {"Deployment", "StatefulSet", "Job", "Pod"},
        "imagePullPolicy Always: images are pinned by tag or image.digest, so IfNotPresent "
        "pulls the same bytes without making every pod start depend on the registry; "
        "image.pullPolicy=Always is one value away",
    ),
    "CKV_K8S_43": (
        {"Deployment", "StatefulSet", "Job", "Pod"},
        "image by digest: the app's digest is only known once the release pipeline has "
        "pushed it; image.digest and postgresql.image.digest pin it at install time",
    ),
    "CKV_K8S_40": (
        {"StatefulSet"},
        "high UID: the bundled postgres image owns its data as uid 70, and an existing "
        "volume's files keep that owner; another uid would stop PostgreSQL on upgrade",
    ),
    "CKV_K8S_8": ({"Pod"}, "liveness probe on the `helm test` pod: it runs to completion in seconds"),
    "CKV_K8S_9": ({"Pod"}, "readiness probe on the `helm test` pod: nothing routes traffic to it"),
}


def _checkov(manifest) -> dict:
    proc = subprocess.run(
        [
            find_tool("checkov", "CHECKOV"),
            "-f",
            str(manifest),
            "--framework",
            "kubernetes",
            "--quiet",
            "--compact",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    # exit status 1 means "findings"; anything else is checkov failing
    assert proc.returncode in (0, 1), proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    return report[0] if isinstance(report, list) else report


def test_checkov_default_render_has_only_the_kept_findings(tmp_path):
    manifest = tmp_path / "default.yaml"
    manifest.write_text(render_text().stdout)
    report = _checkov(manifest)
    summary = report["summary"]
    assert summary["parsing_errors"] == 0
    # it counts init containers as resources of their own, hence >=
    assert summary["resource_count"] >= len(render()), "checkov must have read every rendered object"
    failed = report["results"]["failed_checks"]
    unexpected = [
        f"{c['check_id']} {c['check_name']} on {c['resource']}"
        for c in failed
        if c["check_id"] not in KEPT or c["resource"].split(".")[0] not in KEPT[c["check_id"]][0]
    ]
    assert not unexpected, "new checkov findings: fix them or keep them here with a reason:\n" + "\n".join(
        unexpected
    )
    fired = {c["check_id"] for c in failed}
    assert "CKV_K8S_35" not in fired, "the password must not reach the pods as an env var"
    stale = set(KEPT) - fired
    assert not stale, f"no longer found, drop them from KEPT and the README: {stale}"
    readme = (CHART / "README.md").read_text()
    assert all(check in readme for check in KEPT), "the chart README must justify each kept finding"


def test_checkov_still_sees_the_password_env_var_when_asked_for(tmp_path):
    # proves the scan looks at what it should: the opt-out brings CKV_K8S_35 back
    manifest = tmp_path / "password-env.yaml"
    manifest.write_text(render_text(CHART / "ci" / "password-env-values.yaml").stdout)
    fired = {c["check_id"] for c in _checkov(manifest)["results"]["failed_checks"]}
    assert "CKV_K8S_35" in fired and "CKV2_K8S_6" in fired
