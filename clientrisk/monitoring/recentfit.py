"""Would a model fitted on the new rows themselves predict them better than the deployed one?

The calibrated check asks the deployed model whether the new rows look as its own probabilities
say; a model that is wrong in a way it cannot see (exits that follow a combination of features
it adds up, a relation that moves a little every batch) agrees with itself and passes. This
check asks the rows instead: a small logistic regression is fitted on part of them and predicts
the rest (five folds), from the deployed model's own log-odds together with the features, their
squares and the products of each pair. Where the deployed model is right, the log-odds already
say all there is and the small model, which must also learn their weight, does a shade worse;
where the market moved, or holds a structure the deployed model cannot represent, it does
better. The two are compared row by row by log loss (a paired test, one-sided at `ALPHA`, with a
margin of `TOLERANCE`).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy.stats import norm
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits

from clientrisk.data.clientcsv import FEATURES, TARGET
from clientrisk.model import scoring
from clientrisk.model.features import client_features
from clientrisk.monitoring.drift import PROBABILITY_FLOOR

FOLDS = 5
ALPHA = 0.025
# The small model must be better by more than this (nats, about 1 % of the log loss): a deployed
# model is never exactly right, and with no margin a large batch flags any slight misfit, such as
# that of a model trained on fewer rows than the batch holds, on clients it saw few of.
TOLERANCE = 0.005
# Strength of the small model's regularisation, on standardised columns.
C = 1.0
# Rows the small model learns from at most (a random sample of larger batches).
MOST_ROWS = 20_000
CONTINUOUS = 4  # the logarithms of the three counts and the trend; then the dormancy flag
SEED = 0


def columns(model, rows: pd.DataFrame, log_odds: np.ndarray) -> np.ndarray:
    """The small model's inputs: the deployed model's log-odds, the features as the deployed
    model derives them (its own gap fill), their squares and the products of each pair."""
    imputer = model.named_steps["impute"]
    derived = client_features(imputer.transform(rows[list(FEATURES)]))[:, : CONTINUOUS + 1]
    continuous = derived[:, :CONTINUOUS]
    spread = continuous.std(axis=0)
    continuous = (continuous - continuous.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
    pairs = [
        continuous[:, first] * continuous[:, second]
        for first in range(CONTINUOUS)
        for second in range(first, CONTINUOUS)
    ]
    return np.column_stack([log_odds, continuous, derived[:, CONTINUOUS], *pairs])


def recent_model_check(model, rows: pd.DataFrame, probabilities=None) -> dict:
    """Whether a model fitted on `rows` predicts them better than the deployed `model`.

    Returns:
        dict with `drift` (bool), `available` (False when the rows hold too few of an outcome to
        fit and judge a model on them), the two log losses out of fold, their paired difference
        (small model minus deployed) with its standard error and one-sided p-value, and words.
    """
    labels = rows[TARGET].to_numpy().astype(int)
    counts = np.bincount(labels, minlength=2)
    if counts.min() < FOLDS:
        return {
            "available": False,
            "drift": False,
            "basis": f"too few rows of an outcome ({counts.min()}) to fit a model on them",
        }
    if probabilities is None:
        probabilities = scoring.predict(model, rows)["probability"].to_numpy()
    p = np.clip(np.asarray(probabilities, dtype=float), PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
    if len(rows) > MOST_ROWS:
        chosen = np.sort(np.random.default_rng(SEED).choice(len(rows), MOST_ROWS, replace=False))
        rows, labels, p = rows.iloc[chosen], labels[chosen], p[chosen]
    design = columns(model, rows, np.log(p / (1 - p)))
    small = np.empty(len(labels))
    splitter = StratifiedKFold(n_splits=FOLDS, shuffle=True, random_state=SEED)
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for train, held in splitter.split(design, labels):
            fitted = LogisticRegression(C=C, max_iter=1000).fit(design[train], labels[train])
            small[held] = fitted.predict_proba(design[held])[:, 1]
    small = np.clip(small, PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)

    def losses(q):
        return -(labels * np.log(q) + (1 - labels) * np.log(1 - q))

    difference = losses(small) - losses(p)
    mean = float(difference.mean())
    error = float(difference.std(ddof=1) / np.sqrt(len(difference)))
    margin = mean + TOLERANCE
    p_better = float(norm.cdf(margin / error)) if error > 0 else float(margin < 0)
    drift = p_better < ALPHA
    basis = (
        f"a model fitted on these rows predicts them with log loss {losses(small).mean():.4f}"
        f" out of fold against the deployed model's {losses(p).mean():.4f}"
        f" (difference {mean:+.4f} ± {error:.4f}; better by more than {TOLERANCE} is drift,"
        f" p = {p_better:.3g}"
        + ("; better: the market moved or holds what the model cannot see)" if drift else ")")
    )
    return {
        "available": True,
        "drift": bool(drift),
        "rows": len(labels),
        "recent_log_loss": round(float(losses(small).mean()), 6),
        "deployed_log_loss": round(float(losses(p).mean()), 6),
        "difference": round(mean, 6),
        "standard_error": round(error, 6),
        "p_better": round(p_better, 6),
        "alpha": ALPHA,
        "tolerance": TOLERANCE,
        "basis": basis,
    }
