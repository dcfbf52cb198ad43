"""What ingestion costs: time, peak memory and disk, beside `pandas.read_csv` of the same files.

For each size (default 10,000 and 1,000,000 rows, in files of at most 100,000 rows from the data
generator's process), in a scratch project:

* floor: `pandas.read_csv` of every input file, in the same run;
* first ingestion: `ingestion.run` with every file new, and how much of it was reading,
  checking and storing the files (the rest compiles `finaldata.csv` and `currentclients.csv`);
* one more batch: `ingestion.run` again after a 1,000-row file lands (what a cron tick does);
* disk: the bytes under the ingested-data folder, beside the input files.

Each measurement runs in its own process (median of --repeats), so its peak memory is its own.

Usage: python bench/ingestion_cost.py [--sizes 10000 1000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(PROJECT_DIR), str(PROJECT_DIR / "scripts")]

import generate_data

FILE_ROWS = 100_000
LETTERS = np.array(list("abcdefghijklmnopqrstuvwxyz"))

# Run in a child process: prints {"seconds": ..., "peak_mb": ...}.
MEASURE = """
import json, sys, time
sys.path.insert(0, {project!r})
what, config_path = sys.argv[1], sys.argv[2]
import pandas as pd
if what == "floor":
    from clientrisk.config import load_config
    config = load_config(config_path)
    started = time.perf_counter()
    rows = sum(len(pd.read_csv(path)) for path in sorted(config.input_dir.glob("*.csv")))
else:
    import logging
    from clientrisk.config import load_config
    from clientrisk.data import exports as exports_module, ingest
    logging.disable(logging.WARNING)
    config = load_config(config_path)
    compile_exports = exports_module.write_exports
    def timed_exports(*args, **kwargs):
        begun = time.perf_counter()
        try:
            return compile_exports(*args, **kwargs)
        finally:
            exports.append(time.perf_counter() - begun)
    exports = []
    exports_module.write_exports = timed_exports
    started = time.perf_counter()
    ingest.run(config)
seconds = time.perf_counter() - started
exports_seconds = sum(exports) if what != "floor" else 0.0
# VmHWM: this process's own peak (ru_maxrss would carry the parent's over exec).
status = open("/proc/self/status").read()
peak = int(status.split("VmHWM:")[1].split()[0]) / 1024
print(json.dumps({{"seconds": seconds, "exports_seconds": exports_seconds, "peak_mb": peak}}))
"""


def client_frame(rows: int, seed: int):
    """Rows from the shipped data's process, with six-letter codes (four letters run out)."""
    rng = np.random.default_rng(seed)
    numbers = rng.choice(26**6, size=rows, replace=False)
    digits = np.stack([(numbers // 26**power) % 26 for power in range(5, -1, -1)], axis=1)
    codes = np.array(["".join(row) for row in LETTERS[digits]])
    return generate_data.simulate_clients(rng, codes)


def make_project(root: Path, rows: int) -> Path:
    (root / "sourcedata").mkdir(parents=True)
    (root / "testdata").mkdir()
    frame = client_frame(rows + 1000, seed=rows)
    for number, start in enumerate(range(0, rows, FILE_ROWS), start=1):
        part = frame.iloc[start : min(rows, start + FILE_ROWS)]
        generate_data.write_csv(part, root / "sourcedata" / f"batch{number:03d}.csv")
    generate_data.write_csv(frame.iloc[rows:], root / "extra.csv")
    config = {
        "input_folder_path": "sourcedata",
        "output_folder_path": "ingesteddata",
        "test_data_path": "testdata",
        "output_model_path": "models",
        "prod_deployment_path": "production_deployment",
        "settle_seconds": 0,
    }
    (root / "config.json").write_text(json.dumps(config))
    return root / "config.json"


def measure(what: str, config: Path) -> dict:
    script = MEASURE.format(project=str(PROJECT_DIR))
    result = subprocess.run(
        [sys.executable, "-c", script, what, str(config)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.splitlines()[-1])


def folder_bytes(path: Path) -> int:
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())


def median_of(runs: list[dict]) -> dict:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def bench_size(rows: int, repeats: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="risk-ingest-bench-") as scratch:
        firsts, mores, floors = [], [], []
        for _ in range(repeats):
            root = Path(scratch) / "project"
            shutil.rmtree(root, ignore_errors=True)
            config = make_project(root, rows)
            floors.append(measure("floor", config))
            firsts.append(measure("ingest", config))
            shutil.move(root / "extra.csv", root / "sourcedata" / "zz_extra.csv")
            mores.append(measure("ingest", config))
        return {
            "floor": median_of(floors),
            "first": median_of(firsts),
            "more": median_of(mores),
            "input_mb": folder_bytes(root / "sourcedata") / 2**20,
            "ingested_mb": folder_bytes(root / "ingesteddata") / 2**20,
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(
        "| Rows | pandas.read_csv s | First ingestion s (ratio) | of which read, check and store"
        " s (ratio) | One more 1,000-row batch s (ratio) | Peak MB (floor / ingestion) | Input MB"
        " | Ingested MB |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for rows in args.sizes:
        result = bench_size(rows, args.repeats)
        floor, first, more = result["floor"], result["first"], result["more"]
        stored = first["seconds"] - first["exports_seconds"]
        print(
            f"| {rows:,} | {floor['seconds']:.3f} | {first['seconds']:.3f}"
            f" ({first['seconds'] / floor['seconds']:.1f}x) | {stored:.3f}"
            f" ({stored / floor['seconds']:.1f}x) | {more['seconds']:.3f}"
            f" ({more['seconds'] / floor['seconds']:.1f}x) | {floor['peak_mb']:.0f} /"
            f" {max(first['peak_mb'], more['peak_mb']):.0f} | {result['input_mb']:.1f} |"
            f" {result['ingested_mb']:.1f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
