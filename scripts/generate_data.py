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

The roster (`sourcedata/roster.csv`, no `exited` column) is this month's observation of every
client of the source files still with us (`exited` = 0) and of ROSTER_NEWCOMERS new ones: the
clients the managers can call. A client's year moves a little (x exp(N(0, 0.08))), its trend keeps
half of what it showed (the trend implied by its last rows, x 0.5, + N(0, 0.3)), last month
follows from both, 2 % fall dormant, head counts barely move, and gaps are drawn afresh. It comes
from its own seeded stream, so the other files do not depend on it.

A drifted batch (`--drifted`) models a changed market: activity falls across the board, the trend
matters less and large clients start leaving. A model trained on the usual batches scores clearly
worse on it, and its feature distributions differ.

Usage:
    python scripts/generate_data.py --shipped        # rewrite practicedata/, sourcedata/, testdata/
                                                     # (with the roster of current clients)
    python scripts/generate_data.py --batch PATH     # write an ordinary batch to PATH (--market)
    python scripts/generate_data.py --drifted PATH   # write a drifted batch to PATH

Nothing shipped is rewritten without `--shipped`. A batch's client codes are apart from the
shipped ones (and from the drifted batch's, when both are written): four letters up to
MAX_ROWS_FOUR_LETTERS (444,476) rows, five beyond.
"""

from __future__ import annotations

import argparse
import sys
from collections import namedtuple
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
ROSTER = ("sourcedata", "roster.csv")
ROSTER_NEWCOMERS = 300
ROSTER_COLUMNS = COLUMNS[:-1]
LETTERS = np.array(list("abcdefghijklmnopqrstuvwxyz"))
SHIPPED_CLIENTS = sum(rows for _, rows in SHIPPED_FILES.values())
# The largest batch with four-letter codes apart from the shipped ones; larger get five letters.
MAX_ROWS_FOUR_LETTERS = 26**4 - SHIPPED_CLIENTS
MAX_ROWS = 26**5


def client_codes(rng: np.random.Generator, count: int, letters: int = 4) -> np.ndarray:
    """Distinct lower-case codes of `letters` letters (four: those of the shipped files)."""
    numbers = rng.choice(26**letters, size=count, replace=False)
    powers = range(letters - 1, -1, -1)
    digits = np.stack([(numbers // 26**power) % 26 for power in powers], axis=1)
    return np.array(["".join(row) for row in LETTERS[digits]])


class Market(
    namedtuple(
        "Market",
        "size_shift activity_shift trend_mean intercept trend_effect engagement_effect"
        " hump_effect size_slope dormancy_effect combined_effect quiet_big_effect",
        defaults=(0.0, 0.0, 0.0, -2.3, -5.0, -0.8, 1.0, 0.0, 3.0, 0.0, 0.0),
    )
):
    """How clients look and why they leave.

    Inputs: `size_shift` moves the log of head counts, `activity_shift` the log of last year's
    activity, `trend_mean` the month-on-year trend. Leaving: the log-odds are `intercept` +
    `trend_effect` x trend + `engagement_effect` x engagement + `hump_effect` x the mid-size hump
    + `size_slope` x (log(employees) - 3.7) + `dormancy_effect` x dormant, plus noise; and two
    effects no sum of single features can hold: `combined_effect` for small clients (under
    about 20 employees) whose activity fell sharply (trend below -0.2), `quiet_big_effect` for
    large clients (over about 90) who use the service little for their size.
    """

    __slots__ = ()


# Named markets. The usual one made the shipped data. The others change the inputs alone
# (`bigger`, `smaller`: clients of another size, who leave as such clients always did;
# `quieter`: last month's activity falls against last year's, and more leave, as falling clients
# always did), how the inputs relate to leaving alone (`relation-mild`, `relation-strong`,
# `engagement-led`), or both (`drifted`).
MARKETS = {
    "usual": Market(),
    "bigger": Market(size_shift=0.8),
    "smaller": Market(size_shift=-0.6),
    "quieter": Market(trend_mean=-0.15),
    "relation-mild": Market(
        intercept=-2.1, trend_effect=-2.0, engagement_effect=-0.2, hump_effect=0.5, size_slope=0.4
    ),
    "relation-strong": Market(
        intercept=-1.9,
        trend_effect=1.0,
        engagement_effect=0.5,
        hump_effect=0.0,
        size_slope=0.8,
        dormancy_effect=0.0,
    ),
    "engagement-led": Market(
        intercept=-1.6,
        trend_effect=-1.0,
        engagement_effect=-2.0,
        hump_effect=-1.0,
        dormancy_effect=1.0,
    ),
}
# Markets whose exits follow a combination of features (the first starts like the usual one).
MARKETS["combined"] = Market(combined_effect=3.0, trend_effect=-2.0)
MARKETS["quiet-big"] = Market(quiet_big_effect=2.5, engagement_effect=-0.3)
# The changed market of `--drifted`: the strong change of relation, with activity falling too.
MARKETS["drifted"] = MARKETS["relation-strong"]._replace(activity_shift=-0.5, trend_mean=-0.25)


def simulate_clients(
    rng: np.random.Generator, codes: np.ndarray, drifted: bool = False, market: Market | None = None
):
    """Simulate one row per client code; see the module docstring for the process.

    Args:
        drifted: the changed market of `--drifted` (the same as `market=MARKETS["drifted"]`).
        market: the market to simulate (default: the usual one).
    """
    market = market or (MARKETS["drifted"] if drifted else MARKETS["usual"])
    n = len(codes)
    log_employees = rng.normal(3.7 + market.size_shift, 1.3, n)
    enterprise = rng.random(n) < 0.03
    log_employees[enterprise] += np.log(rng.uniform(10, 60, enterprise.sum()))
    employees = np.maximum(1, np.round(np.exp(log_employees)))
    log_employees = np.log(employees)

    engagement = rng.normal(0, 1, n)
    trend = rng.normal(market.trend_mean, 0.35, n)
    log_year = 3.0 + 0.9 * log_employees + 0.8 * engagement + rng.normal(0, 0.4, n)
    log_year += market.activity_shift
    year = np.round(np.exp(log_year))
    month = np.round(year / 12 * np.exp(trend + rng.normal(0, 0.15, n)))
    dormant = rng.random(n) < 0.02
    month[dormant] = 0

    size_effect = 0.5 * np.clip(log_employees - 3.7, -2.0, 1.0) - 0.4 * np.clip(
        log_employees - 5.0, 0, None
    )
    log_odds = market.intercept + market.trend_effect * trend
    log_odds = log_odds + market.engagement_effect * engagement + market.hump_effect * size_effect
    log_odds = log_odds + market.size_slope * (log_employees - 3.7)
    log_odds = log_odds + market.dormancy_effect * dormant
    log_odds = log_odds + market.combined_effect * ((log_employees < 3.0) & (trend < -0.2))
    log_odds = log_odds + market.quiet_big_effect * ((log_employees > 4.5) & (engagement < -0.5))
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


def roster_frame(frames: dict[str, pd.DataFrame], seed: int = SEED + 1) -> pd.DataFrame:
    """This month's observation of the source files' clients still with us, and newcomers."""
    rng = np.random.default_rng(seed)
    source = pd.concat([frames["dataset3.csv"], frames["dataset4.csv"]], ignore_index=True)
    stayed = source[source["exited"] == 0].drop_duplicates("corporation").reset_index(drop=True)
    n = len(stayed)
    year = stayed["lastyear_activity"].astype(float).to_numpy()
    month = stayed["lastmonth_activity"].astype(float).to_numpy()
    employees = stayed["number_of_employees"].astype(float).to_numpy()
    shown = np.log1p(month) - np.log1p(year / 12)
    trend = 0.5 * np.nan_to_num(shown) + rng.normal(0, 0.3, n)
    new_year = np.round(year * np.exp(rng.normal(0, 0.08, n)))
    new_month = np.round(new_year / 12 * np.exp(trend))
    new_month[rng.random(n) < 0.02] = 0
    new_employees = np.maximum(1, np.round(employees * np.exp(rng.normal(0, 0.03, n))))
    frame = pd.DataFrame(
        {
            "corporation": stayed["corporation"],
            "lastmonth_activity": new_month,
            "lastyear_activity": new_year,
            "number_of_employees": new_employees,
        }
    )
    for name, rate in (
        ("lastmonth_activity", 0.03),
        ("lastyear_activity", 0.02),
        ("number_of_employees", 0.02),
    ):
        frame.loc[rng.random(n) < rate, name] = np.nan
    taken = set(np.concatenate([f["corporation"] for f in frames.values()]))
    codes = [code for code in client_codes(rng, ROSTER_NEWCOMERS * 2) if code not in taken]
    newcomers = simulate_clients(rng, np.array(codes[:ROSTER_NEWCOMERS]))
    frame = pd.concat([frame, newcomers[ROSTER_COLUMNS]], ignore_index=True)
    frame = frame.sample(frac=1, random_state=seed % 2**32).reset_index(drop=True)
    for name in ROSTER_COLUMNS[1:]:
        frame[name] = frame[name].astype("Int64")
    return frame


def batch_frame(rows: int, seed: int, market: Market, taken: set[str]) -> pd.DataFrame:
    """A batch of `rows` clients of `market`, with client codes apart from those `taken`.

    Four-letter codes while there are enough of them beside those taken (MAX_ROWS_FOUR_LETTERS
    beside the shipped files), else five-letter ones, which no shipped code can equal.
    """
    rng = np.random.default_rng(seed)
    if rows + len(taken) <= 26**4:
        codes = [code for code in client_codes(rng, rows + len(taken)) if code not in taken]
    else:
        codes = client_codes(rng, rows, letters=5)
    return simulate_clients(rng, np.array(codes[:rows]), market=market)


def shipped_codes() -> set[str]:
    return set(np.concatenate([frame["corporation"] for frame in shipped_frames().values()]))


def drifted_frame(rows: int, seed: int) -> pd.DataFrame:
    """A batch from the changed market, with client codes apart from the shipped ones."""
    return batch_frame(rows, seed, MARKETS["drifted"], shipped_codes())


def write_csv(frame: pd.DataFrame, path: Path, columns=COLUMNS) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame[columns].to_csv(path, index=False, lineterminator="\n")


def check_rows(parser: argparse.ArgumentParser, rows: int) -> None:
    if rows < 1:
        parser.error(f"--rows must be at least 1, not {rows}")
    if rows > MAX_ROWS:
        parser.error(f"--rows can be at most {MAX_ROWS:,} (the distinct five-letter client codes)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--root", type=Path, default=PROJECT_DIR, help="project folder of --shipped"
    )
    parser.add_argument(
        "--shipped",
        action="store_true",
        help="rewrite the shipped files (practicedata/, sourcedata/ with the roster, testdata/)",
    )
    parser.add_argument("--batch", type=Path, help="write an ordinary batch to this CSV path")
    parser.add_argument(
        "--market",
        choices=sorted(MARKETS),
        default="usual",
        help="the market of --batch (usual: that of the shipped files)",
    )
    parser.add_argument("--drifted", type=Path, help="write a drifted batch to this CSV path")
    parser.add_argument("--rows", type=int, default=2000, help="rows of each batch")
    parser.add_argument("--seed", type=int, default=7, help="seed of the batches")
    args = parser.parse_args(argv)
    if not (args.shipped or args.batch or args.drifted):
        parser.error("nothing to write: give --shipped, --batch PATH or --drifted PATH")
    check_rows(parser, args.rows)
    if args.shipped:
        frames = shipped_frames()
        for name, frame in frames.items():
            folder, _ = SHIPPED_FILES[name]
            write_csv(frame, args.root / folder / name)
        write_csv(roster_frame(frames), args.root.joinpath(*ROSTER), ROSTER_COLUMNS)
        print(f"wrote {len(SHIPPED_FILES) + 1} shipped files under {args.root}")
    taken = shipped_codes() if args.batch or args.drifted else set()
    if args.drifted:
        drifted = batch_frame(args.rows, args.seed, MARKETS["drifted"], taken)
        write_csv(drifted, args.drifted)
        taken |= set(drifted["corporation"])  # the two batches are of different clients
        print(f"wrote {args.rows:,} clients of the drifted market to {args.drifted}")
    if args.batch:
        write_csv(batch_frame(args.rows, args.seed + 1, MARKETS[args.market], taken), args.batch)
        print(f"wrote {args.rows:,} clients of the {args.market} market to {args.batch}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
