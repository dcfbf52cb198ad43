"""What the pipeline costs as the data grows: each step beside the library floor, same run.

For each size (default 10,000, 100,000 and 1,000,000 rows; --sizes 10000000 for ten million),
in a scratch project whose input files hold at most 100,000 rows each (the data generator's
process, six-letter client codes):

* floor: one process that imports pandas and scikit-learn, reads every input file with
  `pandas.read_csv` and fits one `LogisticRegression` on the logarithms of the three counts
  (gaps as 0); it also reports the size of that data frame (`memory_usage(deep=True)`);
* ingestion.py, training.py, scoring.py and deployment.py, each run as cron or a user runs it (its
  own process, imports included);
* a fullprocess.py run on a batch from the changed market of a tenth as many rows (at least
  2,000): ingestion, the drift check, retraining on the window it picks, the comparison, the
  deployment, the call list, diagnostics and the report.

Each process's wall time and peak memory (its own maximum resident size) are printed, with the
three core steps as a ratio to the floor and peak memory as a multiple of the data frame.

Usage: python bench/scale.py [--sizes 10000 100000 1000000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(PROJECT_DIR), str(PROJECT_DIR / "bench"), str(PROJECT_DIR / "scripts")]

from ingestion_cost import client_frame, make_project

import generate_data

ENV = {**os.environ, "RISK_API_URL": "http://127.0.0.1:9"}  # no API in the scratch project

FLOOR = """
import json, sys
import numpy as np, pandas as pd
from sklearn.linear_model import LogisticRegression
from pathlib import Path
frames = [pd.read_csv(path) for path in sorted(Path(sys.argv[1]).glob("*.csv"))]
data = pd.concat(frames, ignore_index=True)
counts = ["lastmonth_activity", "lastyear_activity", "number_of_employees"]
features = np.log1p(data[counts].fillna(0).to_numpy(dtype=float))
LogisticRegression().fit(features, data["exited"])
print(json.dumps({"frame_mb": data.memory_usage(deep=True).sum() / 2**20}))
"""


def measured(command: list[str]) -> dict:
    """Wall seconds and peak resident MB of one child process (its own, from wait4)."""
    started = time.perf_counter()
    child = subprocess.Popen(
        command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    out, err = child.stdout.read(), child.stderr.read()
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({child.returncode}):\n{err[-2000:]}")
    return {"seconds": seconds, "peak_mb": usage.ru_maxrss / 1024, "out": out}


def step(script: str, config: Path) -> dict:
    return measured([sys.executable, str(PROJECT_DIR / script), "--config", str(config)])


def make_data(rows: int, root: Path) -> int:
    """The scratch project's files: the input, the test data, and the changed market's batch
    (kept aside). Returns the changed batch's rows."""
    make_project(root, rows)
    (root / "extra.csv").unlink()
    test = client_frame(2000, seed=rows + 1)
    generate_data.write_csv(test, root / "testdata" / "testdata.csv")
    codes = client_frame(max(2000, rows // 10), seed=rows + 2)["corporation"].to_numpy()
    drifted = generate_data.simulate_clients(np.random.default_rng(rows + 3), codes, drifted=True)
    generate_data.write_csv(drifted, root / "zz_changed_market.csv")
    return len(drifted)


def bench_size(rows: int, root: Path) -> list[tuple[str, dict]]:
    # Made in a child process: a child started from a large process would report that process's
    # size as its own peak (the maximum resident size survives fork and exec).
    made = subprocess.run(
        [sys.executable, __file__, "--make-data", str(rows), str(root)],
        check=True,
        capture_output=True,
        text=True,
    )
    changed = int(made.stdout.split()[-1])
    config = root / "config.json"
    floor = measured([sys.executable, "-c", FLOOR, str(root / "sourcedata")])
    floor["frame_mb"] = json.loads(floor.pop("out").splitlines()[-1])["frame_mb"]
    results = [("floor: read_csv + LogisticRegression", floor)]
    for script in ("ingestion.py", "training.py", "scoring.py", "deployment.py"):
        results.append((script, step(script, config)))
    (root / "zz_changed_market.csv").rename(root / "sourcedata" / "zz_changed_market.csv")
    run = step("fullprocess.py", config)
    record = json.loads((root / "logs" / "fullprocess.jsonl").read_text().splitlines()[-1])
    run["outcome"] = record["outcome"]
    run["steps"] = record.get("steps", {})
    results.append((f"fullprocess.py, {changed:,} changed rows", run))
    return results


def main() -> int:
    if sys.argv[1:2] == ["--make-data"]:
        print(make_data(int(sys.argv[2]), Path(sys.argv[3])))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--keep", type=Path, help="leave the scratch projects in this folder")
    args = parser.parse_args()
    print(
        "| Rows | Step | Seconds | Ratio to floor | Peak MB | Peak / data frame |\n"
        "| --- | --- | --- | --- | --- | --- |"
    )
    timings = []
    if args.keep is not None:
        Path(args.keep).mkdir(parents=True, exist_ok=True)
    for rows in args.sizes:
        scratch = Path(tempfile.mkdtemp(prefix="risk-scale-", dir=args.keep))
        try:
            results = bench_size(rows, scratch / "project")
        finally:
            if args.keep is None:
                shutil.rmtree(scratch, ignore_errors=True)
        floor = results[0][1]
        core = sum(result["seconds"] for name, result in results[1:4])
        for name, result in results:
            outcome = f" ({result['outcome']})" if "outcome" in result else ""
            print(
                f"| {rows:,} | {name}{outcome} | {result['seconds']:.1f} |"
                f" {result['seconds'] / floor['seconds']:.1f}x | {result['peak_mb']:.0f} |"
                f" {result['peak_mb'] / floor['frame_mb']:.1f}x |",
                flush=True,
            )
        steps = results[-1][1].get("steps", {})
        timings.append(f"{rows:,} rows: " + ", ".join(f"{k} {v:.1f}" for k, v in steps.items()))
        print(
            f"| {rows:,} | **ingestion + training + scoring** | {core:.1f} |"
            f" **{core / floor['seconds']:.1f}x** | | (data frame {floor['frame_mb']:.0f} MB) |",
            flush=True,
        )
    print("\nSeconds per step of the fullprocess.py run (its own record):")
    print("\n".join(timings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
