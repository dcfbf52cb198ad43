"""What the history costs on a PostgreSQL server beside the SQLite file: a use of it (open,
read the newest runs, close), a write transaction, a quiet cron tick and a cached dashboard page.

On a scratch copy of the practice data, bootstrapped once with its history in a file and once in
the database `--url` names (emptied first: give a database of its own); then, for each, the
median of `--repeats` opens and writes, quiet ticks (`python fullprocess.py`, as cron runs it) and
dashboard requests (Flask's test client; the page served from memory, its freshness asked).

Usage: python bench/history_server.py --url postgresql://user:password@host/name [--repeats 21]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))
ENV = {
    **{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
    "RISK_API_URL": "http://127.0.0.1:9",  # no API in the scratch copy
}


def median_ms(action, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def project(root: Path, url: str | None) -> Path:
    """A practice project in `root`, bootstrapped; its config file."""
    shutil.copytree(PROJECT_DIR / "practicedata", root / "sourcedata")
    shutil.copytree(PROJECT_DIR / "testdata", root / "testdata")
    settings = json.loads((PROJECT_DIR / "config.json").read_text())
    settings["package_index_url"] = "http://127.0.0.1:9/pypi"  # no network
    if url:
        settings["history_db_url"] = url
    config = root / "config.json"
    config.write_text(json.dumps(settings))
    fullprocess(config)
    fullprocess(config)  # nothing new, decided in full: leaves the quiet tick's stamp
    return config


def fullprocess(config: Path) -> None:
    command = [sys.executable, str(PROJECT_DIR / "fullprocess.py")]
    subprocess.run(
        command, env={**ENV, "RISK_CONFIG": str(config)}, check=True, capture_output=True
    )


def empty(url: str) -> None:
    import psycopg

    from clientrisk.history.postgres import libpq_url

    with psycopg.connect(libpq_url(url), autocommit=True) as db:
        db.execute("DROP SCHEMA IF EXISTS public CASCADE")
        db.execute("CREATE SCHEMA public")


def measure(config: Path, repeats: int) -> dict:
    from clientrisk.api.app import create_app
    from clientrisk.config import load_config
    from clientrisk.history.database import open_history

    where = load_config(config).history_location

    def use():
        with open_history(where) as history:
            history.latest_runs(12)

    def write():
        with open_history(where) as history:
            history.note_fact("bench", str(time.time()))

    client = create_app(config, token="").test_client()
    client.get("/")  # made once; then served from memory
    return {
        "use": median_ms(use, repeats),
        "write": median_ms(write, repeats),
        "tick": median_ms(lambda: fullprocess(config), repeats),
        "page": median_ms(lambda: client.get("/"), repeats * 10),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="a PostgreSQL database of its own (emptied)")
    parser.add_argument("--repeats", type=int, default=21)
    args = parser.parse_args()
    empty(args.url)
    with tempfile.TemporaryDirectory() as scratch:
        results = {
            name: measure(project(Path(scratch) / name, url), args.repeats)
            for name, url in (("SQLite file", None), ("PostgreSQL", args.url))
        }
    print(f"medians of {args.repeats} (pages: of {args.repeats * 10}), in ms")
    print("| | open, read 12 runs, close | one write | quiet tick | cached dashboard page |")
    print("| --- | --- | --- | --- | --- |")
    for name, result in results.items():
        cells = " | ".join(f"{result[key]:.1f}" for key in ("use", "write", "tick", "page"))
        print(f"| {name} | {cells} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
