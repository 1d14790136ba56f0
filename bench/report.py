"""The benchmark's result: medians over rounds, paired ratios, the issue's targets, and the
markdown tables."""

from __future__ import annotations

import statistics

# The targets of the issues (11 and 13), for the service's rows: throughput against the
# design's app and the bare one, p99 against the bare app's, in the same run.
TARGET_VS_DESIGN = 5.0
TARGET_VS_BARE = 0.75
TARGET_P99_VS_BARE = 1.5
TARGET_RSS_MB = 150.0


def summarize(runs: list[dict], apps: list[str], endpoints: list[str]) -> dict:
    summary: dict = {}
    for endpoint in endpoints:
        per_app = {}
        for app in apps:
            rs = [r for r in runs if r["endpoint"] == endpoint and r["app"] == app]
            if not rs:
                continue
            per_app[app] = {
                "rps": statistics.median(r["rps"] for r in rs),
                "p50_ms": statistics.median(r["p50_ms"] for r in rs),
                "p99_ms": statistics.median(r["p99_ms"] for r in rs),
                "p99_ms_max": max(r["p99_ms"] for r in rs),
                "cpu_us_per_req": statistics.median(r["cpu_us_per_req"] or 0 for r in rs),
                "pg_us_per_req": statistics.median(r.get("pg_us_per_req") or 0 for r in rs),
                "non2xx": sum(r["non2xx"] for r in rs),
                "socket_errors": sum(r["socket_errors"] for r in rs),
                "rounds": len(rs),
            }
        # Ratios: the median over rounds of the paired ratio (same round, back to back).
        for app in per_app:
            if not app.startswith("service"):
                continue
            for ref in ("design", "bare"):
                if ref not in per_app:
                    continue
                paired = []
                for rnd in sorted({r["round"] for r in runs}):
                    mine = [
                        r["rps"]
                        for r in runs
                        if r["endpoint"] == endpoint and r["app"] == app and r["round"] == rnd
                    ]
                    theirs = [
                        r["rps"]
                        for r in runs
                        if r["endpoint"] == endpoint and r["app"] == ref and r["round"] == rnd
                    ]
                    if mine and theirs and theirs[0] > 0:
                        paired.append(mine[0] / theirs[0])
                if paired:
                    per_app[app][f"vs_{ref}"] = statistics.median(paired)
            if "bare" in per_app and per_app["bare"]["p99_ms"] > 0:
                per_app[app]["p99_vs_bare"] = per_app[app]["p99_ms"] / per_app["bare"]["p99_ms"]
        summary[endpoint] = per_app
    return summary


def verdict(row: dict) -> str:
    fails = []
    if "vs_design" in row and row["vs_design"] < TARGET_VS_DESIGN:
        fails.append(f"<{TARGET_VS_DESIGN:g}x design")
    if "vs_bare" in row and row["vs_bare"] < TARGET_VS_BARE:
        fails.append(f"<{TARGET_VS_BARE:g}x bare")
    if row.get("p99_vs_bare", 0) > TARGET_P99_VS_BARE:
        fails.append(f"p99>{TARGET_P99_VS_BARE:g}x bare")
    if row["non2xx"] or row["socket_errors"]:
        fails.append("errors")
    return "ok" if not fails else "MISS " + ", ".join(fails)


def render(summary: dict, memory: dict, machine: dict, meta: dict) -> str:
    lines = []
    m = machine
    lines.append(
        f"Machine: {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}, Python {m['python']}, "
        f"PostgreSQL {m['postgresql']}, {m['wrk']}"
    )
    lines.append(
        f"Load: wrk -t{meta['threads']} -c{meta['connections']} -d{meta['duration']:g}s, "
        f"{meta['rounds']} round(s), apps interleaved (order rotated per round); "
        f"medians over rounds; ratios = median of per-round paired ratios. "
        f"Seeded {meta['seed_users']} users, {meta['seed_posts']} posts; "
        f"schema by `wiki-service db upgrade`; "
        f"git {meta.get('git') or '?'}."
    )
    if "noise_cores" in meta:
        lines.append(
            f"Other load on the machine during the runs "
            f"(neither the app, PostgreSQL, wrk nor this harness; steal included): "
            f"median {meta['noise_cores']['median']:.2f} cores, "
            f"max {meta['noise_cores']['max']:.2f}."
        )
    lines.append("")
    lines.append(
        "| endpoint | app | req/s | p50 ms | p99 ms | non-2xx | sock err "
        "| app CPU µs/req | PG CPU µs/req | vs design | vs bare | target |"
    )
    lines.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for endpoint, per_app in summary.items():
        for app, row in per_app.items():
            is_service = app.startswith("service")
            vs_d = f"{row['vs_design']:.2f}x" if "vs_design" in row else ""
            vs_b = f"{row['vs_bare']:.2f}x" if "vs_bare" in row else ""
            target = verdict(row) if is_service else ""
            lines.append(
                f"| {endpoint} | {app} | {row['rps']:,.0f} | {row['p50_ms']:.2f} | "
                f"{row['p99_ms']:.2f} | {row['non2xx']} | {row['socket_errors']} | "
                f"{row['cpu_us_per_req']:.0f} | {row['pg_us_per_req']:.0f} | "
                f"{vs_d} | {vs_b} | {target} |"
            )
    lines.append("")
    lines.append(
        "Peak RSS per server worker process (sampled every 0.2 s over the process tree), "
        "and what each app logged over the whole run:"
    )
    lines.append("")
    lines.append(
        "| app | workers | peak RSS per worker MB | target | log lines | error lines | first error |"
    )
    lines.append("|---|---:|---|---|---:|---:|---|")
    for app, peaks in memory.items():
        mbs = ", ".join(f"{p / 2**20:.0f}" for p in peaks["workers"])
        top = max(peaks["workers"]) / 2**20 if peaks["workers"] else 0
        target = (
            ("ok" if top <= TARGET_RSS_MB else f"MISS >{TARGET_RSS_MB:g} MB")
            if app.startswith("service")
            else ""
        )
        log_info = peaks.get("log", {})
        first = (log_info.get("first_error") or "").replace("|", "/")[:120]
        lines.append(
            f"| {app} | {len(peaks['workers'])} | {mbs} | {target} | "
            f"{log_info.get('lines', 0):,} | {log_info.get('errors', 0):,} | {first} |"
        )
    return "\n".join(lines)
