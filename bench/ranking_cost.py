"""What ranking current clients with their reasons costs, against plain predict_proba.

A model is trained on the shipped data; then --sizes current clients (from the data generator,
without outcomes) are ranked. For each size, the median of --repeats runs of:

* predict_proba: the model's probabilities for the rows (the floor);
* explain: probabilities and the effect of each factor (one call of the model for the rows and
  their counterfactuals);
* rank with reasons: ranking.rank_clients (explain, reasons in words, the sort);
* write riskranking.csv: the list as the step writes it;
* record in the history: the ranking's entries in the history database.

Usage: python bench/ranking_cost.py [--sizes 10000 1000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(PROJECT_DIR), str(PROJECT_DIR / "scripts")]

import generate_data
from clientrisk.atomicfiles import write_csv
from clientrisk.calllist import ranking, reasons
from clientrisk.data.clientcsv import FEATURES, ID_COLUMN, read_labelled_csv
from clientrisk.history.database import open_history
from clientrisk.model import training

LETTERS = np.array(list("abcdefghijklmnopqrstuvwxyz"))


def current_clients(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    numbers = rng.choice(26**6, size=rows, replace=False)
    digits = np.stack([(numbers // 26**power) % 26 for power in range(5, -1, -1)], axis=1)
    codes = np.array(["".join(row) for row in LETTERS[digits]])
    frame = generate_data.simulate_clients(rng, codes)
    return frame.drop(columns=["exited"]).assign(
        **{name: frame[name].astype(float) for name in FEATURES}
    )


def timed(function, repeats: int) -> float:
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def measure(model, size: int, repeats: int) -> None:
    clients = current_clients(size, seed=size)
    features = clients[list(FEATURES)]
    floor = timed(lambda: model.predict_proba(features), repeats)
    ranked = ranking.rank_clients(model, clients)
    entries = list(zip(ranked["rank"], ranked[ID_COLUMN], ranked["probability"], strict=True))
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / ranking.RANKING_FILE

        def record():
            with open_history(Path(scratch) / "history.db") as history:
                history.record_ranking("0" * 64, "v0001", 1, entries)

        steps = {
            "explain": lambda: reasons.explain(model, clients),
            "rank with reasons": lambda: ranking.rank_clients(model, clients),
            "write riskranking.csv": lambda: write_csv(ranked[ranking.csv_columns(ranked)], path),
            "record in the history": record,
        }
        print(f"| {size:,} | predict_proba | {floor:.3f} | 1.0 |", flush=True)
        for name, step in steps.items():
            seconds = timed(step, repeats)
            print(f"| {size:,} | {name} | {seconds:.3f} | {seconds / floor:.1f} |", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    shipped = sorted((PROJECT_DIR / "sourcedata").glob("dataset*.csv"))
    train = pd.concat([read_labelled_csv(path) for path in shipped], ignore_index=True)
    model, _ = training.fit_model(train)
    print("| Current clients | Step | Seconds | × predict_proba |")
    print("| --- | --- | --- | --- |")
    for size in args.sizes:
        measure(model, size, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
