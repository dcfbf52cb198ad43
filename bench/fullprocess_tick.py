"""What fullprocess.py costs: the quiet cron tick, the bootstrap and a drifted batch.

On a scratch copy of the shipped data: ingestion, training and scoring alone in one process
(the bootstrap's floor), a bootstrap run, then --ticks runs with nothing new (median
wall time beside `python -c pass`, alternating, in the same run), then a run on a drifted batch
of 2,000 clients from the data generator. Step timings come from the runs' own records. Bytecode
caching is left on, as under cron (a fresh process compiles only the script it runs).

Usage: python bench/fullprocess_tick.py [--ticks 21]
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
ENV = {
    **{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
    "RISK_API_URL": "http://127.0.0.1:9",  # no API in the scratch copy
}


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=ENV, capture_output=True, check=False)
    return time.perf_counter() - started


def fullprocess(config: Path) -> dict:
    subprocess.run(
        [sys.executable, str(PROJECT_DIR / "fullprocess.py"), "--config", str(config)],
        env=ENV,
        capture_output=True,
        check=True,
    )
    log = config.parent / "logs" / "fullprocess.jsonl"
    return json.loads(log.read_text().splitlines()[-1])


# Ingestion, training and scoring alone, as one process would run them (its interpreter and
# imports included, as the bootstrap's are).
STEPS_ALONE = """
import sys
sys.path.insert(0, {project!r})
import logging, ingestion, scoring, training
from clientrisk.config import load_config
logging.disable(logging.WARNING)
config = load_config(sys.argv[1])
ingestion.run(config)
training.run(config)
scoring.run(config)
"""


def steps_alone(root: Path) -> float:
    """Wall time of ingestion + training + scoring in one process, on a fresh copy."""
    copy = root / "alone"
    for folder in ("sourcedata", "testdata"):
        shutil.copytree(PROJECT_DIR / folder, copy / folder)
    config = copy / "config.json"
    config.write_text((PROJECT_DIR / "config.json").read_text())
    script = STEPS_ALONE.format(project=str(PROJECT_DIR))
    return timed([sys.executable, "-c", script, str(config)])


def print_steps(title: str, record: dict) -> None:
    steps = ", ".join(f"{name} {seconds:.2f}" for name, seconds in record["steps"].items())
    print(f"{title}: {record['outcome']} in {record['seconds']:.1f} s ({steps})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=21)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="risk-tick-") as scratch:
        root = Path(scratch)
        for folder in ("sourcedata", "testdata"):
            shutil.copytree(PROJECT_DIR / folder, root / folder)
        config = root / "config.json"
        config.write_text((PROJECT_DIR / "config.json").read_text())
        alone = steps_alone(root)
        started = time.perf_counter()
        bootstrap = fullprocess(config)
        bootstrap_wall = time.perf_counter() - started
        # As in the cron line: no option; the config comes from RISK_CONFIG.
        ENV["RISK_CONFIG"] = str(config)
        tick = [sys.executable, str(PROJECT_DIR / "fullprocess.py")]
        empty = [sys.executable, "-c", "pass"]
        timed(tick)  # warm the caches once
        ticks, passes = [], []
        for _ in range(args.ticks):
            passes.append(timed(empty))
            ticks.append(timed(tick))
        drifted = root / "sourcedata" / "dataset5.csv"
        subprocess.run(
            [
                sys.executable,
                str(PROJECT_DIR / "scripts" / "generate_data.py"),
                "--root",
                str(root / "unused"),
                "--drifted",
                str(drifted),
                "--rows",
                "2000",
            ],
            check=True,
            capture_output=True,
        )
        # As an upload finished a minute ago: a file changed within settle_seconds is left for
        # the next tick.
        settled = time.time() - 60
        os.utime(drifted, (settled, settled))
        drift_run = fullprocess(config)
    tick_ms, pass_ms = statistics.median(ticks) * 1000, statistics.median(passes) * 1000
    print(
        f"quiet tick (nothing new), median of {args.ticks}: python fullprocess.py {tick_ms:.1f} ms,"
    )
    print(f"  python -c pass {pass_ms:.1f} ms, ratio {tick_ms / pass_ms:.2f}")
    print_steps("bootstrap on the shipped data", bootstrap)
    own = sum(bootstrap["steps"].get(name, 0) for name in ("ingestion", "training", "scoring"))
    print(
        f"  bootstrap process {bootstrap_wall:.2f} s; ingestion + training + scoring alone in one"
        f" process {alone:.2f} s: ratio {bootstrap_wall / alone:.2f}"
        f" (against the bootstrap's own three steps, {own:.2f} s: {bootstrap_wall / own:.2f})"
    )
    print_steps("drifted batch of 2,000 clients", drift_run)
    comparison = drift_run.get("comparison", {})
    if comparison:
        paired = comparison["paired_log_loss"]
        print(
            f"  deployed model F1 on the batch {drift_run['model_drift']['score']:.3f}"
            f" (threshold {drift_run['model_drift']['threshold']:.3f});"
            f" on {comparison['newest_rows']} held-out newest rows: F1 deployed"
            f" {comparison['f1_newest']['deployed']:.3f}, retrained"
            f" {comparison['f1_newest']['retrained']:.3f}; log loss deployed"
            f" {paired['champion_log_loss']:.3f}, retrained {paired['challenger_log_loss']:.3f}"
            f" ({paired['verdict']})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
