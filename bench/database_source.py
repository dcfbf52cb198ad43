"""What the database source costs: 1,000,000 new rows from PostgreSQL beside the same rows from a
CSV file in the same ingestion run, and the quiet cron tick with a database source.

Starts a throw-away PostgreSQL server (tests/dbservers.py: Debian's initdb and pg_ctl). Part 1:
a scratch project whose input folder holds the rows as one CSV file and whose database holds
them as a table; one `ingest.run` reads both, each part timed on its own, with the queries the
database was sent and the process's peak memory after each part. Part 2: a small project
bootstrapped on the practice data with a database source (SQLite, then PostgreSQL), and
--ticks quiet ticks (`python fullprocess.py`, nothing new) beside ticks of the same project
without a database and `python -c pass`, alternating.

Usage: python bench/database_source.py [--rows 1000000] [--ticks 15]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(PROJECT_DIR), str(PROJECT_DIR / "tests"), str(PROJECT_DIR / "scripts")]

import numpy as np
from fullprocess_tick import ENV, fullprocess, timed

import dbservers
import generate_data

BASE_CONFIG = {
    "input_folder_path": "sourcedata",
    "output_folder_path": "ingesteddata",
    "test_data_path": "testdata",
    "output_model_path": "models",
    "prod_deployment_path": "production_deployment",
    "package_index_url": "http://127.0.0.1:9/pypi",
    "dependency_timeout_seconds": 1,
    "settle_seconds": 0,
}


def make_rows(count: int):
    rng = np.random.default_rng(7)
    frame = generate_data.simulate_clients(
        rng, generate_data.client_codes(rng, count, letters=6), False
    )
    return frame.assign(id=np.arange(1, count + 1))


def copy_into_postgres(server, database: str, frame) -> None:
    server.new_database(database)
    import psycopg

    columns = list(generate_data.COLUMNS)
    with psycopg.connect(server.url(database).replace("+psycopg", "")) as db:
        db.execute(
            "CREATE TABLE clients (id BIGINT PRIMARY KEY, corporation TEXT,"
            " lastmonth_activity DOUBLE PRECISION, lastyear_activity DOUBLE PRECISION,"
            " number_of_employees DOUBLE PRECISION, exited SMALLINT)"
        )
        with db.cursor().copy(f"COPY clients (id, {', '.join(columns)}) FROM STDIN") as copy:
            cells = frame[["id", *columns]].astype(object)
            for row in cells.where(cells.notna(), None).itertuples(index=False):
                copy.write_row(list(row))


def project(root: Path, **settings) -> Path:
    for folder in ("sourcedata", "testdata"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    config = root / "config.json"
    config.write_text(json.dumps({**BASE_CONFIG, **settings}))
    return config


# One ingestion run in a fresh process: each source's part timed, the queries counted, and the
# process's peak memory after each part.
INGEST_RUN = """
import json, sys, time
sys.path.insert(0, {project!r})
from sqlalchemy import event
from sqlalchemy.engine import Engine
from clientrisk.config import load_config
from clientrisk.data import dbread, ingest

def peak_mb():
    # VmHWM: this process's own peak (ru_maxrss would carry the parent's over from the fork).
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024

statements, parts = [], {{}}
event.listen(Engine, "before_cursor_execute", lambda *args: statements.append(args[2]))

def timed(name, function):
    def wrapper(*args, **kwargs):
        begun = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            parts[name] = [time.perf_counter() - begun, peak_mb()]
    return wrapper

ingest.ingest_new_files = timed("CSV file", ingest.ingest_new_files)
ingest.ingest_database_rows = timed("PostgreSQL", ingest.ingest_database_rows)
config = load_config(sys.argv[1])
start_peak = peak_mb()
begun = time.perf_counter()
result = ingest.run(config)
print(json.dumps({{"seconds": time.perf_counter() - begun, "summary": result.summary,
    "parts": parts, "start_peak": start_peak, "chunk": dbread.CHUNK_ROWS,
    "queries": [text[:60] for text in statements if "clients" in text]}}))
"""


def ingest_in_child(config: Path) -> dict:
    script = INGEST_RUN.format(project=str(PROJECT_DIR))
    done = subprocess.run(
        [sys.executable, "-c", script, str(config)], env=ENV, capture_output=True, text=True
    )
    if done.returncode:
        raise SystemExit(done.stderr)
    return json.loads(done.stdout.splitlines()[-1])


def late_rows_check(server, database: str, rows: int) -> None:
    """What noticing late rows costs a read: the count of the rows at or below the mark."""
    import psycopg

    with psycopg.connect(server.url(database).replace("+psycopg", "")) as db:
        db.execute("ANALYZE clients")
        times = []
        for _ in range(5):
            started = time.perf_counter()
            db.execute("SELECT count(*) FROM clients WHERE id IS NOT NULL AND id <= %s", [rows])
            times.append(time.perf_counter() - started)
    print(
        f"late-rows check (count of the {rows:,} rows at or below the mark), median of 5:"
        f" {statistics.median(times) * 1000:.0f} ms"
    )


def million_rows(server, root: Path, rows: int) -> None:
    frame = make_rows(rows)
    started = time.perf_counter()
    copy_into_postgres(server, "million", frame)
    print(f"{rows:,} rows copied into PostgreSQL in {time.perf_counter() - started:.1f} s")
    settings = {
        "input_database_url": server.url("million"),
        "input_table": "clients",
        "input_new_rows_column": "id",
    }
    both = project(root / "both", **settings)
    frame.drop(columns=["id"]).to_csv(root / "both" / "sourcedata" / "clients.csv", index=False)
    alone = project(root / "alone", **settings)
    del frame
    late_rows_check(server, "million", rows)
    for title, config in (("both sources, one run", both), ("the database alone", alone)):
        run = ingest_in_child(config)
        print(f"{title}: {run['seconds']:.1f} s in all: {run['summary']}")
        print(f"  peak memory of the process before the run {run['start_peak']:.0f} MB")
        for name, (seconds, peak) in run["parts"].items():
            print(f"  {name}: {rows:,} rows in {seconds:.1f} s; peak memory after it {peak:.0f} MB")
        print(
            f"  database queries: {len(run['queries'])} ({'; '.join(run['queries'])}), in"
            f" chunks of {run['chunk']:,} rows"
        )


def quiet_project(root: Path, **settings) -> Path:
    config = project(root, **settings)
    for name in ("dataset1.csv", "dataset2.csv"):
        shutil.copy(PROJECT_DIR / "practicedata" / name, root / "sourcedata" / name)
    shutil.copy(PROJECT_DIR / "practicedata" / "dataset2.csv", root / "testdata" / "testdata.csv")
    return config


def quiet_ticks(server, root: Path, ticks: int) -> None:
    import sqlite3

    frame = make_rows(500)
    lite = root / "ticks.db"
    with sqlite3.connect(lite) as db:
        columns = ["id", *generate_data.COLUMNS]
        cells = frame[columns].astype(object)
        db.execute(f"CREATE TABLE clients ({', '.join(columns)})")
        db.executemany(
            f"INSERT INTO clients VALUES ({', '.join('?' * len(columns))})",
            list(cells.where(cells.notna(), None).itertuples(index=False)),
        )
    copy_into_postgres(server, "ticks", frame)
    source = {"input_table": "clients", "input_new_rows_column": "id"}
    configs = {
        "no database": quiet_project(root / "plain"),
        "SQLite": quiet_project(root / "lite", input_database_url=f"sqlite:///{lite}", **source),
        "PostgreSQL": quiet_project(root / "pg", input_database_url=server.url("ticks"), **source),
    }
    for name, config in configs.items():
        fullprocess(config)  # bootstrap
        fullprocess(config)  # nothing new: leaves the quiet stamp
        record = fullprocess(config)
        print(f"{name}: {record['outcome']}: {record['reason'][:110]}")
    times = {name: [] for name in [*configs, "python -c pass"]}
    for _ in range(ticks):
        times["python -c pass"].append(timed([sys.executable, "-c", "pass"]))
        for name, config in configs.items():
            ENV["RISK_CONFIG"] = str(config)  # as the cron line: no option
            times[name].append(timed([sys.executable, str(PROJECT_DIR / "fullprocess.py")]))
    stamp_ok = {
        name: (config.parent / f".{config.name}.quiet").exists() for name, config in configs.items()
    }
    print(f"quiet ticks (nothing new), median of {ticks}:")
    for name, values in times.items():
        extra = "" if name not in stamp_ok else f" (quiet stamp: {stamp_ok[name]})"
        print(f"  {name}: {statistics.median(values) * 1000:.1f} ms{extra}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--ticks", type=int, default=15)
    args = parser.parse_args()
    server = dbservers.start_server()
    if isinstance(server, str):
        print(f"no PostgreSQL server: {server}")
        return 1
    try:
        with tempfile.TemporaryDirectory(prefix="risk-dbsource-") as scratch:
            root = Path(scratch)
            if args.rows:
                million_rows(server, root, args.rows)
            if args.ticks:
                quiet_ticks(server, root, args.ticks)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
