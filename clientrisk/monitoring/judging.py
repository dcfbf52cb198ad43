"""Judging what new batches brought, and a retrained model against the live one.

Model drift, by default (`drift_check` = `calibrated`): is the deployed model still right on the
new rows, as its own probabilities predict (see drift.py)? Batches too small to judge wait in a
pool until there are `min_batch_rows` rows with an outcome. Data drift: each feature and the
activity trend of the new rows against the deployed model's training sample, at any size.

Retraining follows the market. The newest rows are those of the batches that arrived after the
live model's training data; 30 % of them are held out. The challenger learns from a window of
batches chosen by cross-validation on the rest of the newest rows, among: every batch, the
window the live model learnt from, and only the newest batches. Every batch wins in a stable
market, where more data helps; only the newest win after a lasting change, where old rows teach
the old market. The challenger and the live model are then compared row by row on the held-out
newest rows, by log loss (a paired test), with F1 and the old test set reported beside: a
challenger significantly worse stays out, any other is deployed, provided the model it was
judged against is still live. Every verdict is recorded in the history.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, train_test_split
from threadpoolctl import threadpool_limits

from clientrisk.config import HISTORY_CHECKS, TRAINING_SAMPLE_FILE
from clientrisk.data import batchstore
from clientrisk.data.clientcsv import FEATURES, TARGET, read_labelled_csv
from clientrisk.deployment import deploy, modelstore
from clientrisk.model import scoring, training
from clientrisk.monitoring import drift

logger = logging.getLogger(__name__)

HOLDOUT_SHARE = 0.3
RANDOM_SEED = 0
# Fewer held-out newest rows than this (or one class only) cannot tell two models apart: a
# retrained model waits until the batches of a drift add up to enough of them.
MIN_COMPARISON_ROWS = 100
# Verdicts on batches that showed drift without a model learning from them.
UNRESOLVED = ("too few rows to compare", "challenger kept out", "live model changed")
WINDOW_FOLDS = 5


def rows_of(config, history, batches):
    """The rows with an outcome that `batches` brought (rows seen in earlier batches count once,
    with the earlier one)."""
    if not batches:
        return batchstore.labelled_history(config.ingested_dir, [])
    seqs = [batch.seq for batch in history.batches() if batch.seq <= batches[-1].seq]
    rows = batchstore.labelled_history(config.ingested_dir, seqs)
    wanted = rows[batchstore.BATCH_COLUMN].isin([batch.seq for batch in batches])
    return rows[wanted.to_numpy()].reset_index(drop=True)


def batch_names(batches) -> str:
    return ", ".join(batch.source for batch in batches)


# --- judging new rows ----------------------------------------------------------------------------


def past_scores(history, deployment, batch_name: str) -> list[float]:
    """The deployed model's F1 scores that the history checks compare with, oldest first: its
    test scores and its scores on batches judged not drifted (a drifted batch's score would
    lower the baseline for good), one per context and dataset. The batch being judged is left
    out: an earlier, interrupted run may have recorded it."""
    sha256 = deployment.manifest["model_sha256"]
    latest = {}
    for row in history.scores(sha256):
        usable = row["context"] == "test" or row["verdict"] == "no drift"
        if row["f1"] is not None and usable and row["dataset"] != batch_name:
            latest.pop((row["context"], row["dataset"]), None)
            latest[(row["context"], row["dataset"])] = row["f1"]
    return list(latest.values()) or [deployment.manifest["metrics"]["f1"]]


def check_reference(config, model, deployment) -> dict:
    """How far the deployed model's log loss exceeded its own expectation on data of its own
    market when it was deployed: the newest held-out rows it was compared on, else the test
    data."""
    reference = deployment.manifest.get("check_reference")
    if reference:
        return reference
    metrics = deployment.manifest.get("metrics", {})
    if "log_loss_excess" not in metrics:
        metrics = scoring.evaluate_model(model, read_labelled_csv(config.test_data_file))
    return {
        "excess": metrics["log_loss_excess"],
        "variance": metrics["log_loss_excess_variance"],
        "rows": metrics["rows"],
        "dataset": config.test_data_file.name,
    }


def data_drift(deployment, rows) -> dict:
    """Each feature and the activity trend of `rows` against the deployed model's training
    sample: a two-sample test that knows the sizes, so a verdict at any size."""
    sample_path = modelstore.deployed_file(deployment, TRAINING_SAMPLE_FILE)
    if sample_path is None:
        return {"available": False, "verdict": "unknown", "drifted": []}
    features = drift.feature_drift(
        drift.with_trend(pd.read_csv(sample_path)),
        drift.with_trend(rows),
        (*FEATURES, drift.TREND),
    )
    drifted = [item["feature"] for item in features if item["ks_drift"]]
    return {
        "available": True,
        "reference": f"training sample of {deployment.label}",
        "features": features,
        "drifted": drifted,
        "verdict": "drift" if drifted else "no drift",
    }


def model_drift(config, history, model, deployment, rows, batch_name: str) -> dict:
    """The configured check of the deployed model on `rows` (enough of them)."""
    method = config.settings["drift_check"]
    metrics = scoring.evaluate_model(model, rows)
    if method in HISTORY_CHECKS:
        test = read_labelled_csv(config.test_data_file)
        predicted = scoring.predict(model, test)["prediction"]
        chance = drift.sampling_f1(test[TARGET], predicted, len(rows))
        past = past_scores(history, deployment, batch_name)
        verdict = drift.score_drift(method, metrics["f1"], past, chance)
    else:
        predictions = scoring.predict(model, rows)
        verdict = drift.model_still_right(
            rows[TARGET],
            predictions["probability"],
            predictions["prediction"],
            check_reference(config, model, deployment),
        )
    verdict.update(
        verdict="drift" if verdict["drift"] else "no drift", rows=len(rows), metrics=metrics
    )
    return verdict


def judge(config, history, log, model, deployment, rows, batches) -> dict:
    """Model drift (when there are enough rows) and data drift of the new rows, recorded."""
    minimum = config.settings["min_batch_rows"]
    seqs = [batch.seq for batch in batches]
    sha256 = deployment.manifest["model_sha256"]
    features = data_drift(deployment, rows)
    if len(rows) < minimum:
        verdict = {"verdict": "insufficient data", "rows": len(rows), "min_batch_rows": minimum}
    else:
        batch_name = ",".join(batch.source for batch in batches)
        verdict = model_drift(config, history, model, deployment, rows, batch_name)
        scoring.record_score(
            config,
            verdict["metrics"],
            sha256,
            "new data",
            batch_name,
            log.run_id,
            verdict["verdict"],
        )
    with history.transaction():
        history.record_drift(
            log.run_id, sha256, seqs, len(rows), "model", verdict["verdict"], verdict
        )
        history.record_drift(
            log.run_id, sha256, seqs, len(rows), "data", features["verdict"], features
        )
    return {"model_drift": verdict, "data_drift": features}


def growth_due(config, history, live) -> str | None:
    """Why the live model should learn from the data that arrived since its training, or None:
    as many rows as it was trained on (times `retrain_growth`) have arrived since."""
    factor = config.settings["retrain_growth"]
    trained = live.manifest.get("training_rows") or 0
    since = sum(
        batch.labelled_rows for batch in history.batches() if batch.seq > live.through_batch
    )
    if factor <= 0 or since < max(factor * trained, config.settings["min_batch_rows"]):
        return None
    return (
        f"{since} rows with an outcome arrived since {live.label} was trained on {trained}"
        f" (retrain_growth {factor:g})"
    )


# --- the challenger ------------------------------------------------------------------------------


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
        # What the challenger's own check will compare new batches with, if it goes live.
        "reference": {
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
                extra_manifest={"check_reference": comparison["reference"]},
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


# --- words for the record ------------------------------------------------------------------------


def nothing_to_judge_reason(ingested, batches) -> str:
    """Why new files brought no rows with an outcome."""
    parts = [
        f"{entry.name}: {entry.status}" + (f" ({entry.note})" if entry.note else "")
        for entry in ingested.recorded
        if entry.status != "ingested"
    ]
    current = sum(batch.current_rows for batch in batches)
    if current:
        parts.append(f"{current} current-client rows (no outcome) in {batch_names(batches)}")
    return "no new rows with an outcome to judge the model on: " + ("; ".join(parts) or "none")


def no_drift_reason(verdicts: dict, rows: int) -> str:
    """Why the model stays, in words."""
    model, data = verdicts["model_drift"], verdicts["data_drift"]
    if model["verdict"] == "insufficient data":
        text = (
            f"insufficient data ({rows} of {model['min_batch_rows']} rows so far): the new"
            " batches wait for more before the model is judged on them"
        )
    elif model["method"] == "calibrated":
        text = f"the model is still right on {rows} new rows: {model['basis']}"
    else:
        text = (
            f"F1 {model['score']:.3f} on {rows} new rows is not below"
            f" {model['threshold']:.3f} ({model['method']})"
        )
    if data["drifted"]:
        text += f"; features drifted ({', '.join(data['drifted'])}) but"
        text += " retrain_on_data_drift is off"
    return text
