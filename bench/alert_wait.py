"""How long a run of fullprocess.py waits for alert receivers that never answer.

On a scratch copy of the shipped practice data: a bootstrap, then the hold-out test file is
removed and a new batch added, so that every run fails. The first failure is no event yet; the
second is ("2 runs in a row failed"), and its alert goes to a webhook that accepts the request
and never answers and to an SMTP server that accepts the connection and never greets. The
third is the same streak: nothing to send. Each run is a process of its own, timed from outside;
the wait is what the second run's record says its alerts took (`alerts_seconds`), beside its
time less the median of the other two.

Usage: python bench/alert_wait.py [--timeout SECONDS] (alert_timeout_seconds; default: its
default, 10)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "RISK_API_URL": "http://127.0.0.1:9"}  # no API in the scratch copy


class Hanging(BaseHTTPRequestHandler):
    """Reads the request, then says nothing until the benchmark ends."""

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(3600)

    def log_message(self, *args):
        pass


def hanging_webhook() -> str:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hanging)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}/hook"


def silent_smtp() -> int:
    listener = socket.create_server(("127.0.0.1", 0))
    held = []

    def accept():
        while True:
            held.append(listener.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    return listener.getsockname()[1]


def timed_run(config: Path) -> tuple[float, dict]:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, str(PROJECT_DIR / "fullprocess.py"), "--config", str(config)],
        env=ENV,
        capture_output=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    log = config.parent / "logs" / "fullprocess.jsonl"
    return seconds, json.loads(log.read_text().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, help="alert_timeout_seconds (default: 10)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="risk-alerts-") as scratch:
        root = Path(scratch)
        shutil.copytree(PROJECT_DIR / "practicedata", root / "practicedata")
        shutil.copytree(PROJECT_DIR / "testdata", root / "testdata")
        config = {
            "input_folder_path": "practicedata",
            "output_folder_path": "ingesteddata",
            "test_data_path": "testdata",
            "output_model_path": "models",
            "prod_deployment_path": "production_deployment",
            "package_index_url": "http://127.0.0.1:9/pypi",
            "settle_seconds": 0,
        }
        config_path = root / "config.json"
        config_path.write_text(json.dumps(config))
        timed_run(config_path)  # the bootstrap
        (root / "testdata" / "testdata.csv").unlink()
        first = next((root / "practicedata").glob("*.csv"))
        shutil.copy(first, root / "practicedata" / "again.csv")
        (root / "practicedata" / "again.csv").write_text(
            first.read_text().replace(",0\n", ",1\n", 50)
        )
        config.update(
            alert_webhook_url=hanging_webhook(),
            alert_email_to="team@example.com",
            alert_smtp_host="127.0.0.1",
            alert_smtp_port=silent_smtp(),
        )
        if args.timeout is not None:
            config["alert_timeout_seconds"] = args.timeout
        config_path.write_text(json.dumps(config))
        runs = [timed_run(config_path) for _ in range(3)]
    for number, (seconds, record) in enumerate(runs, 1):
        alerts = record.get("alerts", {})
        print(f"run {number}: {record['outcome']}, {seconds:.2f} s, alerts: {alerts or 'none'}")
    others = statistics.median([runs[0][0], runs[2][0]])
    limit = args.timeout if args.timeout is not None else 10
    print(
        f"waited for the receivers: {runs[1][1].get('alerts_seconds')} s by the run's record,"
        f" {runs[1][0] - others:.2f} s against the other runs (alert_timeout_seconds {limit:g})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
