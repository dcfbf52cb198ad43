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
import pandas as pd
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
# Verdicts on batches that showed drift without a model learning from them.
UNRESOLVED = ("too few rows to compare", "challenger kept out", "live model changed")
WINDOW_FOLDS = 5
# Half-lives of the age weights a retrain may choose, in rows with an outcome.
HALF_LIVES_ROWS = (1_000, 3_000, 10_000)
# Two-sided 5 %: how far a recipe's forecast count of leavers on the newest rows may be off.
COUNT_Z = 1.96
QUALITY_KEYS = ("f1", "precision", "recall", "roc_auc", "rows")
# The context of a retrained model's score on the newest rows held out from its training.
HELD_OUT_CONTEXT = "held out"


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


def _log_losses(target, probabilities) -> np.ndarray:
    p = np.clip(probabilities, drift.PROBABILITY_FLOOR, 1 - drift.PROBABILITY_FLOOR)
    return -(target * np.log(p) + (1 - target) * np.log(1 - p))


def _within_one_error(losses: dict, order: list, counts_right: dict | None = None):
    """The first of `order` whose paired difference from the best is within one standard error
    of it (the simplest recipe the data cannot tell from the best). Where `counts_right` says
    some recipes forecast as many leavers on these rows as left, to within chance, only those
    compete."""
    means = {key: float(np.mean(values)) for key, values in losses.items()}
    competing = [key for key in order if counts_right is None or counts_right[key]] or order
    best = min(competing, key=means.get)
    for key in competing:
        difference = np.asarray(losses[key]) - np.asarray(losses[best])
        error = float(np.std(difference, ddof=1) / np.sqrt(len(difference)))
        if difference.mean() <= error:
            return key, means
    return best, means


def count_within_chance(target, probabilities) -> bool:
    """Whether the leavers that `probabilities` forecast on these rows are as many as left, to
    within chance (two-sided, 5 %). A recipe that mixes an old market in can predict each row
    about as well by log loss while getting the count wrong: only the exit rate moved, say."""
    p = np.asarray(probabilities, dtype=float)
    spread = float(np.sqrt(np.sum(p * (1 - p))))
    return abs(float(np.sum(target) - p.sum())) <= COUNT_Z * max(spread, 1e-9)


def choose_window(data, newest, starts: list[int], regularisation: float, most_rows: int):
    """The training recipe whose model predicts the newest rows best (log loss, out of fold).

    The recipes: a window of batches from each of `starts`, and every row weighed down by its
    age with each half-life of HALF_LIVES_ROWS; then, for the best of those, the model families.
    The newest rows are split into folds; each fold is predicted by a quick model (no
    calibration) fitted on the recipe's rows without that fold, so every recipe is judged on
    rows that came after what it learnt from, or beside it in the newest batches. The simplest
    recipe within one standard error of the best (paired, row by row) wins, provided it forecasts
    as many leavers on the newest rows as left, to within chance: the most rows, the simplest
    family, since in a stable market more rows and fewer parameters are better, but not rows
    of an old market that get the count of leavers wrong. Each fit learns from at most
    `most_rows` rows (a random sample): the cost stays bounded.

    Args:
        data: every row that may be trained on (held-out rows already left out), with `batch`.
        newest: the rows of `data` that show the market as it is now.

    Returns:
        (recipe {"from_batch", "half_life_rows", "family"}, a summary for the record, the
        chosen recipe's out-of-fold probabilities for `newest` in its order, or None).
    """
    if len(newest) > most_rows:
        newest = newest.sample(n=most_rows, random_state=RANDOM_SEED)
    classes = newest[TARGET].value_counts()
    folds = min(WINDOW_FOLDS, int(classes.min()) if len(classes) == 2 else 0)
    plain = {"from_batch": starts[0], "half_life_rows": None, "family": "logistic"}
    if folds < 2:
        return plain, {"starts": starts, "chosen": plain, "why": "nothing to choose from"}, None
    recipes = [(start, None) for start in starts]
    recipes += [(starts[0], half_life) for half_life in HALF_LIVES_ROWS]
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=RANDOM_SEED)
    splits = list(splitter.split(newest, newest[TARGET]))
    target = newest[TARGET].to_numpy()

    def out_of_fold(start, half_life, family):
        probabilities = np.empty(len(newest))
        for _, validation in splits:
            held = newest.index[validation]
            rows = data[(data[batchstore.BATCH_COLUMN] >= start).to_numpy()]
            weights = training.age_weights(rows[batchstore.BATCH_COLUMN].to_numpy(), half_life)
            keep = ~rows.index.isin(held)
            rows, weights = rows[keep], None if weights is None else weights[keep]
            if len(rows) > most_rows:
                chosen = np.random.default_rng(RANDOM_SEED).choice(len(rows), most_rows, False)
                rows = rows.iloc[chosen]
                weights = None if weights is None else weights[chosen]
            if rows[TARGET].nunique() < 2:
                probabilities[validation] = 0.5
                continue
            if family == "boosting":
                classifier = training.boosting_classifier()
            else:
                classifier = LogisticRegression(
                    C=regularisation, solver=training.SOLVER, max_iter=1000
                )
            model = training.build_pipeline(classifier, family)
            fit = {} if weights is None else {"model__sample_weight": weights}
            model.fit(rows[list(FEATURES)], rows[TARGET], **fit)
            probabilities[validation] = model.predict_proba(newest.loc[held, list(FEATURES)])[:, 1]
        return probabilities

    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        predicted = {recipe: out_of_fold(*recipe, "logistic") for recipe in recipes}
        losses = {recipe: _log_losses(target, values) for recipe, values in predicted.items()}

        def weight_of(recipe):
            rows = data[(data[batchstore.BATCH_COLUMN] >= recipe[0]).to_numpy()]
            weights = training.age_weights(rows[batchstore.BATCH_COLUMN].to_numpy(), recipe[1])
            return len(rows) if weights is None else float(weights.sum())

        effective = {recipe: weight_of(recipe) for recipe in recipes}
        order = sorted(recipes, key=lambda recipe: -effective[recipe])
        counted = {key: count_within_chance(target, values) for key, values in predicted.items()}
        (start, half_life), window_losses = _within_one_error(losses, order, counted)
        families = {"logistic": predicted[(start, half_life)]}
        for family in ("interactions", "boosting"):
            families[family] = out_of_fold(start, half_life, family)
    family_losses = {family: _log_losses(target, values) for family, values in families.items()}
    family_counted = {key: count_within_chance(target, values) for key, values in families.items()}
    family, family_means = _within_one_error(family_losses, list(training.FAMILIES), family_counted)
    recipe = {"from_batch": start, "half_life_rows": half_life, "family": family}

    def name(item):
        return f"from batch {item[0]}" + (f", half-life {item[1]:,} rows" if item[1] else "")

    summary = {
        "starts": starts,
        "log_loss": {name(item): round(value, 6) for item, value in window_losses.items()},
        "effective_rows": {name(item): round(value, 1) for item, value in effective.items()},
        "family_log_loss": {key: round(value, 6) for key, value in family_means.items()},
        "count_off": [name(item) for item, right in counted.items() if not right],
        "chosen": recipe,
        "folds": folds,
        "newest_rows": len(newest),
    }
    summary["why"] = (
        f"{training.FAMILIES[family]} {name((start, half_life))}: the simplest within one"
        f" standard error of the best on {len(newest)} newest rows out of fold (log loss"
        f" {family_means[family]:.4f})"
    )
    return recipe, summary, pd.Series(families[family], index=newest.index)


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
        # The retrained model's quality on these rows, which the report shows once it is live.
        "retrained_newest": {key: newest[key] for key in QUALITY_KEYS},
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
    minimum = config.settings["min_comparison_rows"]
    held_out = len(holdout) >= minimum and holdout[TARGET].nunique() == 2
    data, _ = batchstore.stored_outcomes(config)
    if held_out:
        data = batchstore.without_rows(data, holdout)
    newest_training = data[data[batchstore.BATCH_COLUMN].isin(seqs).to_numpy()]
    params = (live.manifest.get("cross_validation") or {}).get("params", {})
    starts = window_starts(history, live, newest_batches)
    recipe, window, out_of_fold = choose_window(
        data, newest_training, starts, params.get("C", 1.0), config.settings["tuning_rows"]
    )
    facts["window"] = window
    if not held_out and out_of_fold is None:
        reason = (
            f"{cause}; only {len(newest)} newest rows ({len(holdout)} to hold out, at least"
            f" {minimum} of both outcomes are needed; too few of an outcome to compare out of"
            f" fold either): {live.label} stays live, and these batches count again with the"
            " next that drift"
        )
        return "too few rows to compare", reason
    logger.info(
        "%s: retraining on batches %d-%d (%s), %s",
        cause,
        recipe["from_batch"],
        seqs[-1],
        window.get("why", "every batch"),
        f"{len(holdout)} newest rows held out" if held_out else "compared out of fold",
    )
    with log.step("training"):
        trained = training.run(
            config,
            holdout=holdout if held_out else None,
            run_id=log.run_id,
            from_batch=recipe["from_batch"],
            half_life_rows=recipe["half_life_rows"],
            family=recipe["family"],
            why=window.get("why"),
        )
    sha256 = trained.metadata["model_sha256"]
    history.record_challenger(sha256, log.run_id, "pending")
    with log.step("scoring"):
        scoring.run(config)
    if held_out:
        comparison = compare(config, model, trained.model, holdout)
        # Its quality on today's market, which the reports show beside the test file's.
        scoring.record_score(
            config,
            comparison["retrained_newest"],
            sha256,
            HELD_OUT_CONTEXT,
            comparison["newest_excess"]["dataset"],
            log.run_id,
        )
        judged_on = holdout
        challenger = scoring.predict(trained.model, holdout)["probability"].to_numpy()
    else:
        comparison = compare_out_of_fold(model, newest_training, out_of_fold, minimum)
        judged_on, challenger = newest_training.loc[out_of_fold.index], out_of_fold.to_numpy()
    facts["comparison"] = comparison
    earlier = reconsider_stored(config, live, judged_on, challenger, seqs[0])
    if earlier is not None:
        facts["stored_model"] = earlier
        return reinstate(log, config, history, live, cause, trained, earlier)
    return decide_deployment(log, config, history, live, cause, newest_batches, trained, comparison)


def reconsider_stored(config, live, rows, challenger, first_newest: int) -> dict | None:
    """The stored deployment that predicts the newest rows best, if it beats the challenger
    there and is significantly better than the live model: the model of a market that returns.
    Only models trained before the newest batches compete (the rest have seen these rows)."""
    live_probabilities = None
    best = None
    for version in modelstore.list_versions(config.deploy_dir):
        if version == live.version:
            continue
        try:
            stored = modelstore.get_deployment(config.deploy_dir, version)
            if stored.through_batch >= first_newest:
                continue
            model = modelstore.load_model(stored.model_path, stored.manifest["model_sha256"])
        except modelstore.DeploymentError as error:
            logger.info("stored %s not reconsidered: %s", modelstore.version_name(version), error)
            continue
        probabilities = scoring.predict(model, rows)["probability"].to_numpy()
        against_challenger = drift.paired_log_loss(rows[TARGET], probabilities, challenger)
        if against_challenger["difference"] >= 0:
            continue
        if live_probabilities is None:
            live_model, _ = modelstore.load_deployed_model(config.deploy_dir)
            live_probabilities = scoring.predict(live_model, rows)["probability"].to_numpy()
        against_live = drift.paired_log_loss(rows[TARGET], probabilities, live_probabilities)
        if against_live["verdict"] != "better":
            continue
        if best is None or against_live["difference"] < best["against_live"]["difference"]:
            best = {
                "version": version,
                "label": stored.label,
                "against_live": against_live,
                "against_challenger": against_challenger,
            }
    return best


def reinstate(log, config, history, live, cause, trained, earlier: dict):
    """Make a stored model live again: it predicts the newest rows best."""
    paired = earlier["against_live"]
    reason = (
        f"{cause}; {earlier['label']} again: best on the {paired['rows']} newest rows (log loss"
        f" {paired['challenger_log_loss']:.4f} against {paired['champion_log_loss']:.4f} for"
        f" {live.label} and {earlier['against_challenger']['champion_log_loss']:.4f} for the"
        " retrained model)"
    )
    sha256 = trained.metadata["model_sha256"]
    if modelstore.current_version(config.deploy_dir) != live.version:
        reason += "; but the live model changed by hand during this run: nothing done"
        history.record_challenger(sha256, log.run_id, "kept out", reason)
        return "live model changed", reason
    with log.step("deployment"):
        deploy.roll_back(config, earlier["version"], reason)
    history.record_challenger(sha256, log.run_id, "kept out", reason)
    return "redeployed", reason


def compare_out_of_fold(champion, newest, out_of_fold, minimum: int) -> dict:
    """The challenger's recipe against the live model on every newest row, when too few can be
    held out (fewer than `minimum`): each row predicted by the recipe fitted without its fold
    (choose_window), beside the live model's prediction, row by row."""
    rows = newest.loc[out_of_fold.index]
    old_probabilities = scoring.predict(champion, rows)["probability"]
    paired = drift.paired_log_loss(rows[TARGET], out_of_fold.to_numpy(), old_probabilities)
    return {
        "newest_rows": len(rows),
        "method": (
            f"out of fold on all {len(rows)} newest rows (fewer than {minimum} could be held"
            " out; min_comparison_rows)"
        ),
        "paired_log_loss": paired,
    }


def retrain_on_everything(log, config, history, live, batches, stored: int):
    """Data too small for any test (fewer rows with an outcome than `min_comparison_rows` in
    the whole store): learn from every row and deploy, saying why.

    Returns:
        (outcome, reason).
    """
    minimum = config.settings["min_comparison_rows"]
    why = (
        f"{stored} rows with an outcome in all, fewer than min_comparison_rows ({minimum}):"
        " too few to test a model on, so every new row is learnt from"
    )
    with log.step("training"):
        trained = training.run(config, run_id=log.run_id, why=why)
    sha256 = trained.metadata["model_sha256"]
    history.record_challenger(sha256, log.run_id, "pending")
    with log.step("scoring"):
        scoring.run(config)
    return _deploy(
        log,
        config,
        history,
        live,
        sha256,
        f"new rows in {batch_names(batches)}; {why}",
        lambda label: f"{why}; retrained on all {stored} and deployed {label}",
        f"{why}; but not deployed",
    )


def _deploy(log, config, history, live, sha256, deploy_reason, deployed, not_deployed):
    """Deploy the retrained model unless what is live changed during this run, and record it.

    Args:
        deployed: the run's reason once deployed, from the new version's label.
        not_deployed: the start of the run's reason when what is live changed.

    Returns:
        (outcome, reason).
    """
    try:
        with log.step("deployment"):
            result = deploy.deploy_trained_model(
                config, deploy_reason, expected_sha256=sha256, expected_live=live.version
            )
    except modelstore.LiveChanged as error:
        reason = (
            f"{not_deployed}: {error} (changed by hand during this run); the retrained model"
            " stays in the model folder, kept out"
        )
        history.record_challenger(sha256, log.run_id, "kept out", reason)
        return "live model changed", reason
    reason = deployed(result.deployment.label)
    history.record_challenger(sha256, log.run_id, "deployed", reason)
    return "redeployed", reason


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
    return _deploy(
        log,
        config,
        history,
        live,
        sha256,
        f"{cause} on {batch_names(batches)}; retrained model {paired['verdict']}",
        lambda label: f"{cause}; {scores}: {paired['verdict']}; {label} is live",
        f"{cause}; {scores}, but not deployed",
    )
