"""Load test of the API under gunicorn, beside a bare Flask route as the ceiling.

Builds a scratch copy of the project from the shipped data (ingest, train, score, deploy,
diagnostics), then serves it with gunicorn twice with the same settings: the real API
(wsgi:app) and bench/ceiling_app.py, a bare route doing the same prediction with a preloaded
model (and no reasons). The API is measured with each record's reasons (its default) and
without (`"reasons": false`). wrk (Debian package `wrk`) sends traffic from 8 connections for
--seconds to 127.0.0.1 only. Prints requests per second and p50/p99 latency, and the API's share
of the ceiling.

GET / (the dashboard) and GET /metrics are measured beside GET /health, as ratios of their p50
and p99 latencies.

Usage: python bench/api_load.py [--seconds 20] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

PROJECT_DIR = Path(__file__).resolve().parent.parent
BENCH_DIR = PROJECT_DIR / "bench"
# GET / is the dashboard, /metrics the Prometheus endpoint; /health is their baseline.
GET_PATHS = ("/scoring", "/summarystats", "/diagnostics", "/", "/metrics", "/health")
RECORD = {"lastmonth_activity": 40, "lastyear_activity": 600, "number_of_employees": 12}
LUA = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = io.open("{body}"):read("*a")
"""


def build_project(root: Path) -> Path:
    for folder in ("sourcedata", "testdata"):
        shutil.copytree(PROJECT_DIR / folder, root / folder)
    config = json.loads((PROJECT_DIR / "config.json").read_text())
    config["timing_repeats"] = 1
    path = root / "config.json"
    path.write_text(json.dumps(config))
    for step in ("ingestion", "training", "scoring", "deployment", "diagnostics"):
        subprocess.run(
            [sys.executable, str(PROJECT_DIR / f"{step}.py"), "--config", str(path)],
            check=True,
            capture_output=True,
        )
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_gunicorn(target: str, config: Path, workers: int):
    port = free_port()
    env = {**os.environ, "RISK_CONFIG": str(config)}
    env.pop("RISK_API_TOKEN", None)
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--pythonpath",
            f"{PROJECT_DIR},{BENCH_DIR}",
            "--log-level",
            "warning",
            # gunicorn.conf.py turns the access log on for both servers; format every line, as
            # in production, but do not print them.
            "--access-logfile",
            os.devnull,
            target,
        ],
        cwd=PROJECT_DIR,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            requests.post(f"{url}/prediction", json={"records": [RECORD]}, timeout=2)
            return server, url
        except requests.ConnectionError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit(f"{target} did not start")


def wrk(url: str, seconds: int, script: Path | None) -> tuple[float, float, float]:
    """Requests per second, p50 and p99 latency in milliseconds."""
    command = ["wrk", "-t2", "-c8", f"-d{seconds}s", "--latency"]
    if script:
        command += ["-s", str(script)]
    output = subprocess.run([*command, url], check=True, capture_output=True, text=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    return rate, latency(output, "50%"), latency(output, "99%")


def latency(output: str, percentile: str) -> float:
    value, unit = re.search(rf"{percentile}\s+([\d.]+)(us|ms|s)\b", output).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install wrk")
    results = []
    with tempfile.TemporaryDirectory(prefix="risk-load-") as scratch:
        root = Path(scratch)
        config = build_project(root / "project")
        scripts = {}
        for rows in (1, 1000):
            for reasons in (True, False):
                body = root / f"body{rows}-{reasons}.json"
                records = {"records": [RECORD] * rows}
                body.write_text(json.dumps(records if reasons else {**records, "reasons": False}))
                scripts[rows, reasons] = root / f"post{rows}-{reasons}.lua"
                scripts[rows, reasons].write_text(LUA.format(body=body))
        for target, name in (("ceiling_app:app", "ceiling"), ("wsgi:app", "api")):
            server, url = start_gunicorn(target, config, args.workers)
            try:
                # The ceiling predicts without reasons whatever the body asks.
                for rows, reasons in [(1, True), (1000, True)] + (
                    [(1, False), (1000, False)] if name == "api" else []
                ):
                    measured = wrk(f"{url}/prediction", args.seconds, scripts[rows, reasons])
                    request = f"POST /prediction, {rows} record(s)"
                    if name == "api":
                        request += "" if reasons else ", no reasons"
                    results.append((name, request, *measured))
                if name == "api":
                    for path in GET_PATHS:
                        results.append((name, f"GET {path}", *wrk(url + path, args.seconds, None)))
            finally:
                server.terminate()
                server.wait(timeout=20)
    ceiling = {request: rate for name, request, rate, *_ in results if name == "ceiling"}
    ceiling.update({f"{request}, no reasons": rate for request, rate in ceiling.items()})
    print(
        f"gunicorn --workers {args.workers} (gunicorn.conf.py),"
        f" wrk -t2 -c8 -d{args.seconds}s, 127.0.0.1"
    )
    print(
        f"{'server':<8} {'request':<44} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'of ceiling':>11}"
    )
    for name, request, rate, p50, p99 in results:
        share = f"{rate / ceiling[request]:.2f}" if name == "api" and request in ceiling else ""
        print(f"{name:<8} {request:<44} {rate:>8.1f} {p50:>8.2f} {p99:>8.2f} {share:>11}")
    gets = {request: (p50, p99) for name, request, _, p50, p99 in results if name == "api"}
    health = gets["GET /health"]
    for path in ("/", "/metrics"):
        p50, p99 = gets[f"GET {path}"]
        ratios = f"p50 {p50 / health[0]:.1f}x, p99 {p99 / health[1]:.1f}x"
        print(f"GET {path} against GET /health: {ratios}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
