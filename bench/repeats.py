"""Finding exact repeats: row keys (rowkeys.py) beside pandas' `duplicated`, same rows, same run.

Rows from the data generator's process with six-letter codes: all distinct, then with a sixth of
them sent again. Prints the median of --repeats timings and each one's peak extra memory
(tracemalloc: what numpy and pandas allocate; arrow's few buffers of 8 bytes a row are not
traced).

Usage: python bench/repeats.py [--rows 1000000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(PROJECT_DIR), str(PROJECT_DIR / "bench")]

from ingestion_cost import client_frame

from clientrisk.data import rowkeys
from clientrisk.data.clientcsv import COLUMNS


def measure(find, frame, repeats: int) -> tuple[float, float, np.ndarray]:
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        found = find(frame)
        seconds.append(time.perf_counter() - started)
    tracemalloc.start()
    find(frame)
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return statistics.median(seconds), peak, found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    distinct = client_frame(args.rows, seed=1)
    distinct = distinct.astype({"corporation": "str", "exited": "Int8"})[list(COLUMNS)]
    again = distinct.sample(frac=0.2, random_state=2)
    cases = {
        "all distinct": distinct,
        "a sixth sent again": pd.concat([distinct, again], ignore_index=True),
    }
    print("| Rows | Case | pandas duplicated s (peak MB) | row keys s (peak MB) | ratio |")
    print("| --- | --- | --- | --- | --- |")
    for name, frame in cases.items():
        by_pandas = measure(lambda rows: rows.duplicated().to_numpy(), frame, args.repeats)
        by_keys = measure(lambda rows: rowkeys.duplicated(rows, COLUMNS), frame, args.repeats)
        assert np.array_equal(by_pandas[2], by_keys[2])
        print(
            f"| {len(frame):,} | {name} | {by_pandas[0]:.3f} ({by_pandas[1]:.0f}) |"
            f" {by_keys[0]:.3f} ({by_keys[1]:.0f}) | {by_keys[0] / by_pandas[0]:.2f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
