"""What a benchmark measures: wrk runs with the CPU time of the app, PostgreSQL, wrk and the
rest of the machine; the peak RSS of each server worker; the error lines in each app's log;
py-spy profiles; the machine itself."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from stack import BENCH_DIR, App, BenchError, Database, last_log_line, log

WRK_DIR = BENCH_DIR / "wrk"
ENDPOINTS = {  # name -> wrk script
    "GET /user/{id}": "get_user.lua",
    "POST /users": "post_users.lua",
    "POST /posts": "post_posts.lua",
    "mixed 80/20": "mixed.lua",
}


class RssSampler(threading.Thread):
    """Samples the RSS of every process in each app's tree every `interval` seconds.

    Reading one process's RSS is cheap (/proc/PID/statm); listing a tree scans all of /proc,
    so the trees are re-listed only every `rescan` seconds, to keep the harness's own CPU
    use (which competes with the apps) small.
    """

    def __init__(self, apps: list[App], interval: float = 0.2, rescan: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.apps = apps
        self.interval = interval
        self.rescan = rescan
        self._stop_event = threading.Event()

    def _list(self, app: App, psutil) -> list:
        try:
            root = psutil.Process(app.proc.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return []
        parents = set()
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                parents.add(proc.ppid())
                if proc.pid not in app.cmdlines:
                    app.cmdlines[proc.pid] = " ".join(proc.cmdline())[:200]
        for proc in procs:
            app.children[proc.pid] = app.children.get(proc.pid, False) or proc.pid in parents
        return procs

    def run(self) -> None:
        import psutil

        trees: dict[str, list] = {}
        listed_at = 0.0
        while not self._stop_event.wait(self.interval):
            if time.monotonic() - listed_at >= self.rescan:
                listed_at = time.monotonic()
                trees = {
                    app.name: self._list(app, psutil)
                    for app in self.apps
                    if app.proc and app.proc.poll() is None
                }
            for app in self.apps:
                for proc in trees.get(app.name, ()):
                    try:
                        rss = proc.memory_info().rss
                    except psutil.Error:
                        continue
                    app.peak_rss[proc.pid] = max(rss, app.peak_rss.get(proc.pid, 0))

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=2)


def worker_peaks(app: App) -> list[int]:
    """Peak RSS of each server worker: the processes that never had children (a uvicorn
    supervisor or a launcher that only waits is not a worker); the root if it is alone."""
    import_helpers = ("resource_tracker", "semaphore_tracker")
    workers = [
        pid
        for pid, parent in app.children.items()
        if not parent and not any(h in app.cmdlines.get(pid, "") for h in import_helpers)
    ]
    if not workers:
        workers = list(app.peak_rss)
    return sorted((app.peak_rss[pid] for pid in workers), reverse=True)


_JSON_ERROR = re.compile(r'"(level|levelname|severity)":\s*"(error|critical|fatal)"', re.I)
_TEXT_ERROR = re.compile(r"^(ERROR|CRITICAL)\b|^Traceback|\b(ERROR|CRITICAL):")


def scan_log(app: App) -> dict:
    """Lines and error lines the app wrote (stdout + stderr) over the whole run: an app that
    logs an error per request is broken even when every response is a 2xx."""
    lines = errors = 0
    first = ""
    try:
        with open(app.log_path, "rb") as handle:
            for raw in handle:
                lines += 1
                line = raw.decode(errors="replace")
                pattern = _JSON_ERROR if line.lstrip().startswith("{") else _TEXT_ERROR
                if pattern.search(line):
                    errors += 1
                    if not first:
                        match = re.search(r'"message":\s*"([^"]*)"', line)
                        first = (match.group(1) if match else line).strip()[:200]
    except OSError:
        pass
    return {"lines": lines, "errors": errors, "first_error": first, "path": str(app.log_path)}


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        raise ValueError(f"bad wrk duration {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(output: str) -> dict:
    result: dict = {}
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if not match:
        raise BenchError(f"wrk printed no Requests/sec: {output.strip()[-300:]!r}")
    result["rps"] = float(match.group(1))
    for pct in ("50", "75", "90", "99"):
        match = re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", output, re.M)
        result[f"p{pct}_ms"] = _ms(match.group(1)) if match else None
    match = re.search(r"(\d+) requests in ([\d.]+\w+)", output)
    result["requests"] = int(match.group(1)) if match else None
    match = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    result["socket_errors"] = sum(int(g) for g in match.groups()) if match else 0
    result["socket_errors_detail"] = match.group(0) if match else ""
    match = re.search(r"BENCH responses=(\d+) non2xx=(\d+) statuses=(\S*)", output)
    if not match:
        raise BenchError(f"the wrk script printed no BENCH summary line: {output.strip()[-300:]!r}")
    result["responses"] = int(match.group(1))
    result["non2xx"] = int(match.group(2))
    result["statuses"] = match.group(3)
    return result


def tree_cpu_seconds(app: App) -> float:
    """User + system CPU seconds used so far by the app's process tree."""
    import psutil

    total = 0.0
    try:
        root = psutil.Process(app.proc.pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def profile_apps(apps: list[App], args, id_range: tuple[int, int], outdir: Path) -> dict:
    """py-spy each chosen app under wrk, per endpoint; returns the rendered summaries.

    Runs after the measured rounds, so the sampling never touches the numbers in the table.
    """
    import pyspy_summary  # a sibling module: imported only when profiling

    pyspy = Path(sys.executable).parent / "py-spy"
    pyspy_cmd = str(pyspy) if pyspy.exists() else shutil.which("py-spy")
    if not pyspy_cmd:
        raise BenchError("--profile needs py-spy (pip install py-spy)")
    outdir.mkdir(parents=True, exist_ok=True)
    summaries = {}
    for app in apps:
        if app.name not in args.profile:
            continue
        for endpoint in args.endpoints:
            script = ENDPOINTS[endpoint]
            raw = outdir / f"{app.name}-{Path(script).stem}.txt"
            env = {**os.environ, "WRK_USER_ID_MIN": str(id_range[0]), "WRK_USER_ID_MAX": str(id_range[1])}
            seconds = args.profile_duration
            wrk = subprocess.Popen(
                [
                    args.wrk,
                    f"-t{args.threads}",
                    f"-c{args.connections}",
                    f"-d{seconds + 3}s",
                    "-s",
                    str(WRK_DIR / script),
                    app.base,
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                stdin=subprocess.DEVNULL,
            )
            time.sleep(1)
            log(f"py-spy on {app.name} under {endpoint} ({seconds} s) -> {raw}")
            spy = subprocess.run(
                [
                    pyspy_cmd,
                    "record",
                    "--pid",
                    str(app.proc.pid),
                    "--subprocesses",
                    "--rate",
                    str(args.profile_rate),
                    "--duration",
                    str(seconds),
                    "--format",
                    "raw",
                    "--output",
                    str(raw),
                ],
                capture_output=True,
                text=True,
                check=False,
                stdin=subprocess.DEVNULL,
                timeout=seconds + 60,
            )
            wrk.wait(timeout=seconds + 60)
            if spy.returncode != 0 or not raw.exists():
                raise BenchError(f"py-spy failed on {app.name}: {(spy.stderr or spy.stdout).strip()[-300:]}")
            summary = pyspy_summary.summarize(raw.read_text(errors="replace"), top=12)
            summaries[f"{app.name} {endpoint}"] = pyspy_summary.render(
                summary, f"{app.name}, {endpoint} ({raw.name})"
            )
    return summaries


def busy_cpu_seconds() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine so far, summed over cores."""
    import psutil

    t = psutil.cpu_times()
    steal = getattr(t, "steal", 0.0)
    idle = t.idle + getattr(t, "iowait", 0.0)
    guest = getattr(t, "guest", 0.0) + getattr(t, "guest_nice", 0.0)  # already in user
    return sum(t) - idle - guest - steal, steal


def postgres_cpu_seconds(db: Database | None) -> float:
    """CPU seconds of the PostgreSQL processes: the embedded server's tree, or, for a
    server given by URL, every process named postgres (others' use of it included)."""
    import psutil

    procs = []
    if db is not None and db.embedded is not None:
        with contextlib.suppress(OSError, ValueError, psutil.Error):
            pid = int((db.embedded.data_dir / "postmaster.pid").read_text().split()[0])
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
    else:
        procs = [p for p in psutil.process_iter(["name"]) if p.info["name"] in ("postgres", "postmaster")]
    total = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            # children_*: backends that exited and were reaped (a pool that closes and opens
            # connections) keep counting through their parent, the postmaster.
            total += times.user + times.system + times.children_user + times.children_system
    return total


def run_wrk(
    app: App, script: str, seconds: float, args, id_range: tuple[int, int], db: Database | None = None
) -> dict:
    import resource

    env = {**os.environ, "WRK_USER_ID_MIN": str(id_range[0]), "WRK_USER_ID_MAX": str(id_range[1])}
    argv = [
        args.wrk,
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        f"{max(1, round(args.wrk_timeout))}s",
        "--latency",
        "-s",
        str(WRK_DIR / script),
        app.base,
    ]
    cpu_before, pg_before, (busy_before, steal_before) = (
        tree_cpu_seconds(app),
        postgres_cpu_seconds(db),
        busy_cpu_seconds(),
    )
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    me = resource.getrusage(resource.RUSAGE_SELF)
    wall = time.monotonic()
    result = subprocess.run(
        argv,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
        timeout=seconds + 60,
    )
    wall = time.monotonic() - wall
    kids_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    me_after = resource.getrusage(resource.RUSAGE_SELF)
    harness_used = (me_after.ru_utime + me_after.ru_stime) - (me.ru_utime + me.ru_stime)
    busy_after, steal_after = busy_cpu_seconds()
    cpu_used = tree_cpu_seconds(app) - cpu_before
    pg_used = max(0.0, postgres_cpu_seconds(db) - pg_before)
    wrk_used = (kids_after.ru_utime + kids_after.ru_stime) - (kids.ru_utime + kids.ru_stime)
    if result.returncode != 0:
        raise BenchError(
            f"wrk failed ({result.returncode}) against {app.name}: "
            f"{(result.stderr or result.stdout).strip()[-300:]}"
        )
    if app.proc.poll() is not None:
        raise BenchError(f"app {app.name} died during the run: {last_log_line(app)} (log: {app.log_path})")
    parsed = parse_wrk(result.stdout)
    parsed["raw"] = result.stdout
    # Server CPU per request: less sensitive than req/s to what else runs on the machine.
    parsed["cpu_us_per_req"] = cpu_used * 1e6 / parsed["responses"] if parsed["responses"] else None
    parsed["pg_us_per_req"] = pg_used * 1e6 / parsed["responses"] if parsed["responses"] else None
    parsed["load_avg"] = os.getloadavg()[0]
    # Where the machine's cores went during the run, in cores (CPU seconds / wall seconds).
    # "other" is everything that is neither this app, nor PostgreSQL, nor wrk: the noise.
    busy = busy_after - busy_before
    parsed["cores"] = {
        "app": cpu_used / wall,
        "postgres": pg_used / wall,
        "wrk": wrk_used / wall,
        "harness": harness_used / wall,
        "other": max(0.0, busy - cpu_used - pg_used - wrk_used - harness_used) / wall,
        "steal": (steal_after - steal_before) / wall,
    }
    return parsed


def cpu_model() -> str:
    """The processor's model name, as /proc/cpuinfo gives it."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine_info(db: Database, args) -> dict:
    cpu = cpu_model()
    wrk_out = subprocess.run([args.wrk, "-v"], capture_output=True, text=True, check=False)
    match = re.search(r"wrk (\S+)", wrk_out.stdout + wrk_out.stderr)
    wrk_version = [f"wrk {match.group(1)}"] if match else []
    versions = {}
    from importlib import metadata

    for package in (
        "fastapi",
        "uvicorn",
        "sqlalchemy",
        "asyncpg",
        "pydantic",
        "uvloop",
        "httptools",
        "orjson",
    ):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgresql": db.version + (" (embedded)" if db.embedded else " (given by URL)"),
        "wrk": wrk_version[0] if wrk_version else "",
        "packages": versions,
        "load_avg_at_start": os.getloadavg(),
    }
