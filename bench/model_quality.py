"""Compare the pipeline with the course's model on the shipped data.

Both are trained on the same ingested rows (sourcedata, exact duplicates dropped) and scored on
testdata/testdata.csv. The course's model is a plain `LogisticRegression()` on the three raw
columns; it cannot take missing values, so they are filled with 0 for it. The Brier score and the
mean predicted probability (against the actual exit rate) show whether probabilities are honest;
"top100" is the share of the 100 clients ranked highest who really left (whom the managers call).

Usage: python bench/model_quality.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import training
from clientdata import FEATURES, TARGET, read_labelled_csv
from project import DEFAULT_CONFIG_PATH, load_config
from scoring import evaluate_model


class FillMissing:
    """The course's model with its missing inputs set to 0, as its scripts would have to."""

    def __init__(self, model):
        self.model = model

    def fit(self, features, target):
        self.model.fit(features.fillna(0), target)
        return self

    def predict(self, features):
        return self.model.predict(features.fillna(0))

    def predict_proba(self, features):
        return self.model.predict_proba(features.fillna(0))


def main() -> int:
    config = load_config(DEFAULT_CONFIG_PATH)
    frames = [read_labelled_csv(path) for path in sorted(config.input_dir.glob("dataset*.csv"))]
    train = pd.concat(frames, ignore_index=True).drop_duplicates()
    test = read_labelled_csv(config.test_data_file)
    started = time.perf_counter()
    ours, cv = training.fit_model(train)
    ours_seconds = time.perf_counter() - started
    params = {f"model__{key}": value for key, value in cv["params"].items()}
    uncalibrated = (
        training.build_pipeline().set_params(**params).fit(train[list(FEATURES)], train[TARGET])
    )
    started = time.perf_counter()
    course = FillMissing(LogisticRegression()).fit(train[list(FEATURES)], train[TARGET])
    course_seconds = time.perf_counter() - started
    print(
        f"training rows {len(train)}, test rows {len(test)}, exited rate {test[TARGET].mean():.3f}"
    )
    print(f"pipeline settings chosen by {cv['folds']}-fold CV: {cv['params']}")
    print(
        f"{'model':<40} {'F1':>6} {'prec.':>6} {'recall':>6} {'ROC AUC':>8} {'Brier':>7}"
        f" {'mean p':>7} {'top100':>7} {'fit s':>6}"
    )
    for name, model, seconds in (
        ("pipeline (training.py)", ours, ours_seconds),
        ("same, without calibration and threshold", uncalibrated, None),
        ("course: LogisticRegression() raw", course, course_seconds),
    ):
        m = evaluate_model(model, test)
        probabilities = model.predict_proba(test[list(FEATURES)])[:, 1]
        brier = brier_score_loss(test[TARGET], probabilities)
        top = test[TARGET].to_numpy()[np.argsort(-probabilities, kind="stable")[:100]].mean()
        fit = "" if seconds is None else f"{seconds:.2f}"
        print(
            f"{name:<40} {m['f1']:>6.3f} {m['precision']:>6.3f} {m['recall']:>6.3f}"
            f" {m['roc_auc']:>8.3f} {brier:>7.4f} {probabilities.mean():>7.3f} {top:>7.2f} {fit:>6}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
