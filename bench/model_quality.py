"""Compare the pipeline with the course's model on the shipped data.

Both are trained on the same ingested rows (sourcedata, exact duplicates dropped) and scored on
testdata/testdata.csv. The course's model is a plain `LogisticRegression()` on the three raw
columns; it cannot take missing values, so they are filled with 0 for it. The Brier score and the
mean predicted probability (against the actual exit rate) show whether probabilities are honest;
"top100" is the share of the 100 clients ranked highest who really left (whom the managers call).

Two more sections, on clients simulated by the data generator's process (training and
held-out rows apart, the same for every model compared):

* large data: --large-rows rows (default 200,000) trained with the settings, calibration and
  threshold chosen on every row, and on a stratified sample of `tuning_rows` (training.py's
  default for large data); both fit the regression on every row;
* gaps: 0, 5 and 20 % of the feature values removed at random from training and held-out rows
  alike, the pipeline (its gap fill) against the same pipeline with a plain median fill and
  with scikit-learn's IterativeImputer on the logarithms.

Usage: python bench/model_quality.py [--large-rows 200000] [--gap-rows 20000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import generate_data
from clientrisk.config import DEFAULT_CONFIG_PATH, load_config
from clientrisk.data.clientcsv import FEATURES, TARGET, read_labelled_csv
from clientrisk.model import scoring, training
from clientrisk.model.scoring import evaluate_model


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


SCORE_HEADINGS = f"{'F1':>6} {'ROC AUC':>8} {'log loss':>8} {'Brier':>7} {'mean p':>7}"


def simulated(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return generate_data.simulate_clients(rng, generate_data.client_codes(rng, rows))


def scores(model, test: pd.DataFrame) -> str:
    m = evaluate_model(model, test)
    probabilities = model.predict_proba(test[list(FEATURES)])[:, 1]
    brier = brier_score_loss(test[TARGET], probabilities)
    return (
        f"{m['f1']:>6.3f} {m['roc_auc']:>8.3f} {m['log_loss']:>8.4f} {brier:>7.4f}"
        f" {probabilities.mean():>7.3f}"
    )


def large_data(rows: int) -> None:
    train, test = simulated(rows, seed=101), simulated(100_000, seed=102)
    print(f"\nlarge data: {rows:,} training rows, 100,000 held-out rows")
    print(f"{'tuned on':<40} {SCORE_HEADINGS} {'fit s':>6}")
    for name, tuning_rows in (
        ("every row", rows),
        (f"a sample of {training.TUNING_ROWS:,} rows", training.TUNING_ROWS),
    ):
        started = time.perf_counter()
        model, _ = training.fit_model(train, tuning_rows)
        seconds = time.perf_counter() - started
        print(f"{name:<40} {scores(model, test)} {seconds:>6.1f}")


def with_gaps(frame: pd.DataFrame, share: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    out = frame.copy()
    for name in FEATURES:
        values = out[name].astype("Float64")
        values[rng.random(len(out)) < share] = pd.NA
        out[name] = values
    return out


def gaps(rows: int) -> None:
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401
    from sklearn.impute import IterativeImputer, SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    def on_logarithms(imputer):
        return make_pipeline(FunctionTransformer(np.log1p), imputer, FunctionTransformer(np.expm1))

    warnings.filterwarnings("ignore", category=ConvergenceWarning)  # IterativeImputer's
    train_full, test_full = simulated(rows, seed=201), simulated(20_000, seed=202)
    print(f"\ngaps: {rows:,} training rows, 20,000 held-out rows; values removed at random")
    print(f"{'gap fill':<50} {SCORE_HEADINGS}")
    for share in (0.0, 0.05, 0.20):
        train, test = with_gaps(train_full, share, 203), with_gaps(test_full, share, 204)
        for name, imputer in (
            ("training.py (features.ActivityImputer)", None),
            ("median", SimpleImputer(strategy="median")),
            ("IterativeImputer on the logarithms", IterativeImputer(random_state=0)),
        ):
            if imputer is not None and share == 0:
                continue
            if imputer is None:
                model, _ = training.fit_model(train)
            else:
                model = GapFilled(on_logarithms(imputer)).fit(train)
            print(f"{int(share * 100):>2} % missing, {name:<38} {scores(model, test)}")


class GapFilled:
    """training.py's model on rows whose gaps another imputer filled first (on the log scale):
    its own gap fill then sees no gap, so these models have no missing-value indicators."""

    def __init__(self, fill):
        self.fill = fill

    def _filled(self, features: pd.DataFrame) -> pd.DataFrame:
        values = features.to_numpy(dtype=float, na_value=np.nan)
        filled = self.fill.transform(values)
        return pd.DataFrame(filled, columns=list(FEATURES), index=features.index)

    def fit(self, data: pd.DataFrame):
        values = data[list(FEATURES)].to_numpy(dtype=float, na_value=np.nan)
        self.fill.fit(values)
        filled = self._filled(data[list(FEATURES)])
        self.model, _ = training.fit_model(filled.assign(**{TARGET: data[TARGET].to_numpy()}))
        return self

    def predict_proba(self, features: pd.DataFrame):
        return self.model.predict_proba(self._filled(features))

    def predict(self, features: pd.DataFrame):
        return scoring.predict_arrays(self.model, self._filled(features))[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large-rows", type=int, default=200_000)
    parser.add_argument("--gap-rows", type=int, default=20_000)
    args = parser.parse_args()
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
    large_data(args.large_rows)
    gaps(args.gap_rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
