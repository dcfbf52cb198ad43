"""Retraining a challenger on the market as it is now, and deploying it unless it is worse.

The newest rows are those of the batches that arrived after the live model's training data; 30 %
of them are held out. The challenger learns from a window of batches chosen by cross-validation
on the rest of the newest rows, among: every batch, the window the live model learnt from, and
only the newest batches. Every batch wins in a stable market, where more data helps; only the
newest win after a lasting change, where old rows teach the old market. The challenger and the
live model are then compared row by row on the held-out newest rows, by log loss (a paired test),
with F1 and the old test set reported beside: a challenger significantly worse stays out, any
other is deployed, provided the model it was judged against is still live.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, train_test_split
from threadpoolctl import threadpool_limits

from clientrisk.data import batchstore
from clientrisk.data.clientcsv import FEATURES, TARGET, read_labelled_csv
from clientrisk.deployment import deploy, modelstore
from clientrisk.model import scoring, training
from clientrisk.monitoring import drift
from clientrisk.monitoring.judging import batch_names, rows_of

logger = logging.getLogger(__name__)

HOLDOUT_SHARE = 0.3
RANDOM_SEED = 0
# Fewer held-out newest rows than this (or one class only) cannot tell two models apart: a
# retrained model waits until the batches of a drift add up to enough of them.
MIN_COMPARISON_ROWS = 100
# Verdicts on batches that showed drift without a model learning from them.
UNRESOLVED = ("too few rows to compare", "challenger kept out", "live model changed")
WINDOW_FOLDS = 5


def split_newest(rows):
    """(rows to train on, rows held out to compare the models), stratified when possible."""
    counts = rows[TARGET].value_counts()
    stratify = rows[TARGET] if len(counts) == 2 and counts.min() >= 2 else None
    return train_test_split(
        rows, test_size=HOLDOUT_SHARE, random_state=RANDOM_SEED, stratify=stratify
    )


def drifted_batches(history, live, pending) -> list:
    """The batches of a drift so far: those being judged now, and the ones just before them,
    since the live model's training, that drifted without a model learning from them yet (too
    few rows to compare, a challenger kept out). A batch on which the live model was right ends
    the run: what came before it is not the same drift."""
    waiting = {batch.seq for batch in pending}
    earlier = []
    for batch in reversed(history.batches()):
        if batch.seq <= live.through_batch:
            break
        if batch.seq in waiting or batch.judgement == "nothing to judge":
            continue
        if batch.judgement not in UNRESOLVED:
            break
        earlier.append(batch)
    return sorted([*earlier, *pending], key=lambda batch: batch.seq)


def window_starts(history, live, newest_batches) -> list[int]:
    """First batches of the windows a challenger may learn from: every batch, the live model's
    window, the batches after the live model's training, and the newest batches alone."""
    seqs = [batch.seq for batch in history.batches()]
    starts = {
        seqs[0],
        live.manifest.get("from_batch") or seqs[0],
        live.through_batch + 1,
        newest_batches[0].seq,
    }
    return sorted(start for start in starts if start <= seqs[-1])


def choose_window(data, newest, starts: list[int], regularisation: float, most_rows: int):
    """The window whose model predicts the newest rows best (log loss, cross-validated).

    A quick logistic regression of the model's pipeline (no calibration) is fitted per fold and
    window; the earliest start within one standard error of the best wins, since in a stable
    market more rows are better. Each fit learns from at most `most_rows` rows of its window
    and at most that many newest rows are predicted (random samples): the cost stays bounded
    whatever the size of the store.

    Args:
        data: every row that may be trained on (held-out rows already left out), with `batch`.
        newest: the rows of `data` that arrived after the live model's training.

    Returns:
        (first batch of the window, a summary for the record).
    """
    if len(newest) > most_rows:
        newest = newest.sample(n=most_rows, random_state=RANDOM_SEED)
    classes = newest[TARGET].value_counts()
    folds = min(WINDOW_FOLDS, int(classes.min()) if len(classes) == 2 else 0)
    if len(starts) == 1 or folds < 2:
        return starts[0], {"starts": starts, "chosen": starts[0], "why": "nothing to choose from"}
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=RANDOM_SEED)
    losses = {start: [] for start in starts}
    with (
        threadpool_limits(limits=1, user_api="blas"),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _, validation in splitter.split(newest, newest[TARGET]):
            held = newest.index[validation]
            target = newest.loc[held, TARGET].to_numpy()
            for start in starts:
                rows = data[(data[batchstore.BATCH_COLUMN] >= start).to_numpy()]
                rows = rows.drop(index=held, errors="ignore")
                if len(rows) > most_rows:
                    rows = rows.sample(n=most_rows, random_state=RANDOM_SEED)
                if rows[TARGET].nunique() < 2:
                    losses[start].extend([np.inf] * len(held))
                    continue
                model = training.build_pipeline(
                    LogisticRegression(C=regularisation, solver=training.SOLVER, max_iter=1000)
                ).fit(rows[list(FEATURES)], rows[TARGET])
                p = np.clip(model.predict_proba(newest.loc[held, list(FEATURES)])[:, 1], 1e-6, 1)
                p = np.minimum(p, 1 - 1e-6)
                losses[start].extend(-(target * np.log(p) + (1 - target) * np.log(1 - p)))
    means = {start: float(np.mean(values)) for start, values in losses.items()}
    errors = {
        start: float(np.std(values, ddof=1) / np.sqrt(len(values)))
        for start, values in losses.items()
    }
    best = min(means, key=means.get)
    chosen = min(start for start in starts if means[start] <= means[best] + errors[best])
    summary = {
        "starts": starts,
        "log_loss": {str(start): round(means[start], 6) for start in starts},
        "standard_error": {str(start): round(errors[start], 6) for start in starts},
        "chosen": chosen,
        "folds": folds,
        "newest_rows": len(newest),
    }
    return chosen, summary


def compare(config, champion, challenger, holdout) -> dict:
    """The challenger against the live model on the held-out newest rows, row by row, with F1
    and the old test set beside (reported, not mixed in)."""
    new_probabilities = scoring.predict(challenger, holdout)["probability"]
    old_probabilities = scoring.predict(champion, holdout)["probability"]
    paired = drift.paired_log_loss(holdout[TARGET], new_probabilities, old_probabilities)
    newest = scoring.evaluate_model(challenger, holdout)
    seqs = sorted(set(holdout[batchstore.BATCH_COLUMN]))
    test = read_labelled_csv(config.test_data_file)
    return {
        "newest_rows": len(holdout),
        "paired_log_loss": paired,
        "f1_newest": {
            "deployed": scoring.evaluate_model(champion, holdout)["f1"],
            "retrained": newest["f1"],
        },
        # How the challenger's probabilities fare on the newest rows (its drift check's reference
        # comes from its own training rows, out of fold: see training.calibrate).
        "newest_excess": {
            "excess": newest["log_loss_excess"],
            "variance": newest["log_loss_excess_variance"],
            "rows": newest["rows"],
            "dataset": f"{len(holdout)} held-out rows of batches {seqs[0]}-{seqs[-1]}",
        },
        "test_data": {
            "file": config.test_data_file.name,
            "deployed": _brief(scoring.evaluate_model(champion, test)),
            "retrained": _brief(scoring.evaluate_model(challenger, test)),
        },
    }


def _brief(metrics: dict) -> dict:
    return {key: metrics[key] for key in ("f1", "log_loss", "rows")}


def retrain(log, config, history, model, live, cause: str, newest_batches, facts: dict):
    """Train a challenger on the market as it is now and deploy it unless it is worse.

    Args:
        newest_batches: the batches that show the market as it is now: those that made the
            model drift, or all that arrived since the live model's training.

    Returns:
        (outcome, reason).
    """
    newest = rows_of(config, history, newest_batches)
    _, holdout = split_newest(newest)
    seqs = [batch.seq for batch in newest_batches]
    facts["newest"] = {"batches": seqs, "rows": len(newest)}
    if len(holdout) < MIN_COMPARISON_ROWS or holdout[TARGET].nunique() < 2:
        reason = (
            f"{cause}; only {len(holdout)} newest rows to hold out (at least"
            f" {MIN_COMPARISON_ROWS}, of both outcomes, are needed to compare a retrained model"
            f" with {live.label}): {live.label} stays live, and these batches count again with"
            " the next that drift"
        )
        return "too few rows to compare", reason
    data, _ = batchstore.stored_outcomes(config)
    data = batchstore.without_rows(data, holdout)
    newest_training = data[data[batchstore.BATCH_COLUMN].isin(seqs).to_numpy()]
    params = (live.manifest.get("cross_validation") or {}).get("params", {})
    starts = window_starts(history, live, newest_batches)
    start, window = choose_window(
        data, newest_training, starts, params.get("C", 1.0), config.settings["tuning_rows"]
    )
    facts["window"] = window
    logger.info(
        "%s: retraining on batches %d-%d, %d newest rows held out",
        cause,
        start,
        seqs[-1],
        len(holdout),
    )
    with log.step("training"):
        trained = training.run(config, holdout=holdout, run_id=log.run_id, from_batch=start)
    sha256 = trained.metadata["model_sha256"]
    history.record_challenger(sha256, log.run_id, "pending")
    with log.step("scoring"):
        scoring.run(config)
    comparison = compare(config, model, trained.model, holdout)
    facts["comparison"] = comparison
    return decide_deployment(log, config, history, live, cause, newest_batches, trained, comparison)


def decide_deployment(log, config, history, live, cause, batches, trained, comparison):
    """Deploy the challenger unless it is significantly worse on the newest rows."""
    paired = comparison["paired_log_loss"]
    sha256 = trained.metadata["model_sha256"]
    scores = (
        f"log loss on {paired['rows']} newest rows: retrained {paired['challenger_log_loss']:.4f},"
        f" {live.label} {paired['champion_log_loss']:.4f} (difference {paired['difference']:+.4f},"
        f" 95 % interval {paired['interval_95'][0]:+.4f} to {paired['interval_95'][1]:+.4f})"
    )
    if paired["verdict"] == "worse":
        reason = f"{cause}; {scores}: significantly worse; {live.label} stays live"
        history.record_challenger(sha256, log.run_id, "kept out", reason)
        return "challenger kept out", reason
    try:
        with log.step("deployment"):
            result = deploy.deploy_trained_model(
                config,
                f"{cause} on {batch_names(batches)}; retrained model {paired['verdict']}",
                expected_sha256=sha256,
                expected_live=live.version,
            )
    except modelstore.LiveChanged as error:
        reason = (
            f"{cause}; {scores}, but not deployed: {error} (changed by hand during this run);"
            " the retrained model stays in the model folder, kept out"
        )
        history.record_challenger(sha256, log.run_id, "kept out", reason)
        return "live model changed", reason
    reason = f"{cause}; {scores}: {paired['verdict']}; {result.deployment.label} is live"
    history.record_challenger(sha256, log.run_id, "deployed", reason)
    return "redeployed", reason
