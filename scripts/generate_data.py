"""Generate the shipped client data: a seeded, documented simulation of corporate clients.

How a client is made (all logarithms natural; one row per client):

* Size. `number_of_employees` is log-normal (median about 40) with a few percent of large
  enterprises multiplied by 10-60, so head counts run from 1 to tens of thousands.
* Engagement. A hidden engagement level e ~ N(0, 1). `lastyear_activity` grows slightly less than
  proportionally with size: log(activity) = 1.6 + 0.9 log(employees) + 0.8 e + noise.
* Trend. A hidden month-on-year trend t ~ N(0, 0.35); `lastmonth_activity` is a twelfth of last
  year's activity times exp(t + noise), so a falling trend means a low month against the year.
  Dormant clients end up with 0 activity last month.
* Leaving. The log-odds of `exited` are -1.75 - 2.4 t - 0.55 e + 0.5 (log(employees) - 3.7)
  clipped to a hump (mid-sized clients churn most) plus N(0, 0.6) noise. Leaving is therefore
  driven by ratios and logarithms of the raw columns: a logistic regression on log-transformed
  features recovers most of it, one on the raw numbers only a part. About 22 % of clients leave.
* Gaps. Each numeric feature is missing in about 2-4 % of rows, a little more often for small
  clients (whose exports are less complete).

A drifted batch (`--drifted`) models a changed market: activity falls across the board, the trend
matters less and large clients start leaving. A model trained on the usual batches scores clearly
worse on it, and its feature distributions differ.

Usage:
    python scripts/generate_data.py                  # rewrite practicedata/, sourcedata/, testdata/
    python scripts/generate_data.py --drifted PATH   # also write a drifted batch to PATH
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

PROJECT_DIR = Path(__file__).resolve().parent.parent
COLUMNS = [
    "corporation",
    "lastmonth_activity",
    "lastyear_activity",
    "number_of_employees",
    "exited",
]
SEED = 20261121
# name -> (folder, rows); the client codes of all shipped files are distinct.
SHIPPED_FILES = {
    "dataset1.csv": ("practicedata", 250),
    "dataset2.csv": ("practicedata", 250),
    "dataset3.csv": ("sourcedata", 5000),
    "dataset4.csv": ("sourcedata", 5000),
    "testdata.csv": ("testdata", 2000),
}
# Rows of dataset3 repeated verbatim in dataset4, as overlapping exports do; ingestion drops them.
REPEATED_ROWS = 40
LETTERS = np.array(list("abcdefghijklmnopqrstuvwxyz"))


def client_codes(rng: np.random.Generator, count: int) -> np.ndarray:
    """Distinct four-letter lower-case codes."""
    numbers = rng.choice(26**4, size=count, replace=False)
    digits = np.stack([(numbers // 26**power) % 26 for power in (3, 2, 1, 0)], axis=1)
    return np.array(["".join(row) for row in LETTERS[digits]])


def simulate_clients(rng: np.random.Generator, codes: np.ndarray, drifted: bool = False):
    """Simulate one row per client code; see the module docstring for the process."""
    n = len(codes)
    log_employees = rng.normal(3.7, 1.3, n)
    enterprise = rng.random(n) < 0.03
    log_employees[enterprise] += np.log(rng.uniform(10, 60, enterprise.sum()))
    employees = np.maximum(1, np.round(np.exp(log_employees)))
    log_employees = np.log(employees)

    engagement = rng.normal(0, 1, n)
    trend = rng.normal(-0.25 if drifted else 0.0, 0.35, n)
    log_year = 3.0 + 0.9 * log_employees + 0.8 * engagement + rng.normal(0, 0.4, n)
    if drifted:
        log_year -= 0.5
    year = np.round(np.exp(log_year))
    month = np.round(year / 12 * np.exp(trend + rng.normal(0, 0.15, n)))
    dormant = rng.random(n) < 0.02
    month[dormant] = 0

    size_effect = 0.5 * np.clip(log_employees - 3.7, -2.0, 1.0) - 0.4 * np.clip(
        log_employees - 5.0, 0, None
    )
    if drifted:
        log_odds = -1.9 + 1.0 * trend + 0.8 * (log_employees - 3.7) + 0.5 * engagement
    else:
        log_odds = -2.3 - 5.0 * trend - 0.8 * engagement + size_effect + 3.0 * dormant
    log_odds += rng.normal(0, 0.3, n)
    exited = (rng.random(n) < 1 / (1 + np.exp(-log_odds))).astype(int)

    frame = pd.DataFrame(
        {
            "corporation": codes,
            "lastmonth_activity": month,
            "lastyear_activity": year,
            "number_of_employees": employees,
            "exited": exited,
        }
    )
    small = log_employees < 2.5
    for name, rate in (
        ("lastmonth_activity", 0.03),
        ("lastyear_activity", 0.02),
        ("number_of_employees", 0.02),
    ):
        gap = rng.random(n) < np.where(small, 2 * rate, rate)
        frame.loc[gap, name] = np.nan
    for name in ("lastmonth_activity", "lastyear_activity", "number_of_employees"):
        frame[name] = frame[name].astype("Int64")
    return frame


def shipped_frames(seed: int = SEED) -> dict[str, pd.DataFrame]:
    """Every shipped file's rows, by file name."""
    rng = np.random.default_rng(seed)
    total = sum(rows for _, rows in SHIPPED_FILES.values())
    codes = iter(
        np.split(client_codes(rng, total), np.cumsum([r for _, r in SHIPPED_FILES.values()]))
    )
    frames = {name: simulate_clients(rng, next(codes)) for name in SHIPPED_FILES}
    repeated = frames["dataset3.csv"].sample(REPEATED_ROWS, random_state=seed % 2**32)
    frames["dataset4.csv"] = pd.concat([frames["dataset4.csv"], repeated], ignore_index=True)
    frames["dataset4.csv"] = frames["dataset4.csv"].sample(frac=1, random_state=1)
    return frames


def drifted_frame(rows: int, seed: int) -> pd.DataFrame:
    """A batch from the changed market, with client codes apart from the shipped ones."""
    rng = np.random.default_rng(seed)
    shipped = set(np.concatenate([frame["corporation"] for frame in shipped_frames().values()]))
    codes = [code for code in client_codes(rng, rows + len(shipped)) if code not in shipped]
    return simulate_clients(rng, np.array(codes[:rows]), drifted=True)


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame[COLUMNS].to_csv(path, index=False, lineterminator="\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--root", type=Path, default=PROJECT_DIR, help="project folder to write into"
    )
    parser.add_argument("--drifted", type=Path, help="also write a drifted batch to this CSV path")
    parser.add_argument("--rows", type=int, default=2000, help="rows of the drifted batch")
    parser.add_argument("--seed", type=int, default=7, help="seed of the drifted batch")
    args = parser.parse_args(argv)
    for name, frame in shipped_frames().items():
        folder, _ = SHIPPED_FILES[name]
        write_csv(frame, args.root / folder / name)
    if args.drifted:
        write_csv(drifted_frame(args.rows, args.seed), args.drifted)
    print(f"wrote {len(SHIPPED_FILES)} shipped files under {args.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
