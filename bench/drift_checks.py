"""How often each drift check fires on unchanged and on drifted batches, by batch size.

Trains the model on the shipped data, then draws --repeats batches per size from the data
generator's usual process (nothing changed: every flag is a false alarm) and from its drifted
process (every flag is a detection). For each batch it applies the three score checks with the
history a fresh deployment has (its test score), and the per-feature Kolmogorov-Smirnov test with
Benjamini-Hochberg correction against the training sample. Prints the share of batches flagged.

Usage: python bench/drift_checks.py [--repeats 200]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(PROJECT_DIR), str(PROJECT_DIR / "scripts")]

import drift  # noqa: E402
import generate_data  # noqa: E402
import training  # noqa: E402
from clientdata import FEATURES, TARGET, read_labelled_csv  # noqa: E402
from project import DEFAULT_CONFIG_PATH, load_config  # noqa: E402
from scoring import evaluate_model, predict  # noqa: E402

SIZES = (15, 100, 1000)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    config = load_config(DEFAULT_CONFIG_PATH)
    frames = [read_labelled_csv(path) for path in sorted(config.input_dir.glob("*.csv"))]
    train = pd.concat(frames, ignore_index=True).drop_duplicates()
    test = read_labelled_csv(config.test_data_file)
    model, _ = training.fit_model(train)
    reference = training.reference_sample(train)
    test_f1 = evaluate_model(model, test)["f1"]
    test_predictions = predict(model, test)["prediction"]
    rng = np.random.default_rng(7)
    print(f"model F1 on the test data {test_f1:.3f}; {args.repeats} batches per cell")
    print(f"{'batch':>6} {'process':<10} {'F1 mean':>8} {'F1 sd':>6}", end="")
    for name in (*drift.SCORE_CHECKS, "KS data"):
        print(f" {name:>13}", end="")
    print()
    for size in SIZES:
        chance = drift.sampling_f1(test[TARGET], test_predictions, size)
        for drifted in (False, True):
            flags = dict.fromkeys((*drift.SCORE_CHECKS, "KS data"), 0)
            scores = []
            for _ in range(args.repeats):
                codes = generate_data.client_codes(rng, size)
                batch = generate_data.simulate_clients(rng, codes, drifted=drifted)
                batch[list(FEATURES)] = batch[list(FEATURES)].astype(float)
                f1 = evaluate_model(model, batch)["f1"]
                scores.append(f1)
                for method in drift.SCORE_CHECKS:
                    flags[method] += drift.score_drift(method, f1, [test_f1], chance)["drift"]
                features = drift.feature_drift(reference, batch, FEATURES)
                flags["KS data"] += any(item["ks_drift"] for item in features)
            label = "drifted" if drifted else "unchanged"
            print(f"{size:>6} {label:<10} {np.mean(scores):>8.3f} {np.std(scores):>6.3f}", end="")
            for count in flags.values():
                print(f" {count / args.repeats:>13.0%}", end="")
            print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
