"""Statistics that say whether new client data, or the model's score on it, has drifted, and
whether a retrained model beats the live one.

Data drift: whether new client data differs from the data the model was trained on.

The verdict comes from a test that knows the sample sizes: a two-sample Kolmogorov-Smirnov test per
feature, with the Benjamini-Hochberg correction across features (a feature drifts when its adjusted
p-value is below KS_ALPHA). A fixed distance threshold cannot do this: on a 20-row batch the
distance is mostly noise, on a 100,000-row batch a harmless shift crosses it. The population
stability index is reported beside the test as the size of the change, flagged from
PSI_MAJOR (the usual reading: below 0.1 no real change, 0.1-0.25 moderate, 0.25 and above major).

Data drift is tested on the raw features and on the model's own derived feature, the activity
trend (last month against a twelfth of last year, on the log scale): a fall in recent activity
hides in the heavy-tailed raw counts but shows plainly in the trend.

Model drift, by default (`model_still_right`): whether the deployed model is still right on this
very batch. Its calibrated probabilities say what F1 and what log loss to expect on these rows if
it is; the batch's real F1 and log loss are compared with a simulation of both (labels drawn
from those probabilities), the log loss beside the excess the model showed on data of its own
market when it was deployed, with a small tolerance. It needs no history, so no drifted batch
can corrupt it, it knows the batch size, and a harmless shift of the inputs (the model still
right) does not trigger it.

Model drift by the three classic checks (`score_drift`), kept as options: whether the deployed
model's F1 on a new batch is worse than its past scores. The past scores of one model rarely
number more than a handful, and an F1 on a batch of n rows scatters by an amount that depends on
n; so the spread the parametric check allows, and the reference sample of the non-parametric
check while the history is short, also come from `sampling_f1`: the F1 the deployed model gets
on resampled batches of the same size from the test data, that is, when nothing has changed.
Only scores of batches that were not judged as drifted enter their history.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import false_discovery_control, ks_2samp

from clientrisk.config import HISTORY_CHECKS

# Past scores needed before the non-parametric check uses them instead of resampled batches.
MIN_HISTORY_FOR_QUARTILES = 8
RESAMPLES = 500
KS_ALPHA = 0.05
PSI_MODERATE = 0.1
PSI_MAJOR = 0.25
PSI_BINS = 10
# Share given to an empty bin so that the index stays finite.
PSI_FLOOR = 1e-4


def population_stability_index(reference: pd.Series, current: pd.Series, bins: int = PSI_BINS):
    """PSI of `current` against `reference` over the reference's quantile bins plus a missing bin.

    Returns:
        The index (0 when the two are distributed alike), or None when either side is empty.
    """
    reference, current = pd.Series(reference, dtype=float), pd.Series(current, dtype=float)
    if reference.empty or current.empty:
        return None
    known = reference.dropna()
    edges = np.unique(np.quantile(known, np.linspace(0, 1, bins + 1)[1:-1])) if len(known) else []
    edges = np.concatenate([[-np.inf], edges, [np.inf]])

    def shares(values: pd.Series) -> np.ndarray:
        counts = np.histogram(values.dropna(), bins=edges)[0]
        counts = np.append(counts, values.isna().sum())
        return np.maximum(counts / len(values), PSI_FLOOR)

    expected, actual = shares(reference), shares(current)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def psi_level(psi) -> str:
    if psi is None:
        return "unknown"
    if psi >= PSI_MAJOR:
        return "major"
    return "moderate" if psi >= PSI_MODERATE else "none"


TREND = "activity_trend"


def with_trend(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with the activity trend the model derives: log(1 + last month) - log(1 + last
    year / 12); missing for dormant clients (no activity last month) and where a count is."""
    month = frame["lastmonth_activity"].astype(float)
    year = frame["lastyear_activity"].astype(float)
    trend = np.log1p(month) - np.log1p(year / 12)
    return frame.assign(**{TREND: trend.where(month > 0)})


def feature_drift(reference: pd.DataFrame, current: pd.DataFrame, features) -> list[dict]:
    """Per-feature KS test (Benjamini-Hochberg adjusted) and PSI of `current` against `reference`.

    Returns:
        One dict per feature: ks_statistic, ks_pvalue, ks_adjusted_pvalue, ks_drift, psi,
        psi_level, psi_drift, rows compared and missing shares. A feature with no values on a side
        has None for its test and is not flagged.
    """
    results, pvalues = [], []
    for name in features:
        ref, cur = reference[name].astype(float), current[name].astype(float)
        ref_known, cur_known = ref.dropna(), cur.dropna()
        statistic = pvalue = None
        if len(ref_known) and len(cur_known):
            test = ks_2samp(ref_known, cur_known)
            statistic, pvalue = float(test.statistic), float(test.pvalue)
            pvalues.append(pvalue)
        psi = population_stability_index(ref, cur)
        results.append(
            {
                "feature": name,
                "reference_rows": len(ref),
                "current_rows": len(cur),
                "reference_missing_share": _share(ref.isna()),
                "current_missing_share": _share(cur.isna()),
                "reference_median": _median(ref_known),
                "current_median": _median(cur_known),
                "ks_statistic": statistic,
                "ks_pvalue": pvalue,
                "psi": None if psi is None else round(psi, 6),
                "psi_level": psi_level(psi),
                "psi_drift": psi is not None and psi >= PSI_MAJOR,
            }
        )
    adjusted = iter(false_discovery_control(pvalues, method="bh") if pvalues else [])
    for result in results:
        tested = result["ks_pvalue"] is not None
        result["ks_adjusted_pvalue"] = float(next(adjusted)) if tested else None
        result["ks_drift"] = tested and result["ks_adjusted_pvalue"] < KS_ALPHA
    return results


def _share(mask: pd.Series):
    return round(float(mask.mean()), 6) if len(mask) else None


def _median(values: pd.Series):
    return float(values.median()) if len(values) else None


# --- model drift ---------------------------------------------------------------------------------


def sampling_f1(truth, predicted, rows: int, resamples: int = RESAMPLES, seed: int = 0):
    """F1 of `predicted` on `resamples` batches of `rows` drawn with replacement.

    Args:
        truth, predicted: labels (0/1) of a reference set, such as the test data.
        rows: the size of the batch being judged.

    Returns:
        An array of F1 scores: how much an F1 on `rows` rows varies by chance alone.
    """
    truth = np.asarray(truth, dtype=bool)
    predicted = np.asarray(predicted, dtype=bool)
    picks = np.random.default_rng(seed).integers(0, len(truth), size=(resamples, rows))
    actual, guessed = truth[picks], predicted[picks]
    true_positive = (actual & guessed).sum(axis=1)
    errors = (actual ^ guessed).sum(axis=1)
    denominator = 2 * true_positive + errors
    return np.divide(2 * true_positive, denominator, out=np.zeros(resamples), where=denominator > 0)


def score_drift(method: str, new_score: float, past_scores, chance_scores) -> dict:
    """Judge `new_score` against the deployed model's past scores.

    Args:
        method: "raw" (lower than the last score), "parametric" (more than two standard
            deviations below the mean of past scores) or "nonparametric" (below Q1 - 1.5 IQR).
        past_scores: the deployed model's F1 scores so far, oldest first (at least one).
        chance_scores: `sampling_f1` for a batch of this size.

    Returns:
        dict with `drift` (bool), `threshold` and how it was found.
    """
    past = np.asarray(past_scores, dtype=float)
    chance = np.asarray(chance_scores, dtype=float)
    if method == "raw":
        threshold, basis = float(past[-1]), "the last score"
    elif method == "parametric":
        history_sd = float(past.std(ddof=1)) if len(past) >= 2 else 0.0
        chance_sd = float(chance.std(ddof=1))
        spread = max(history_sd, chance_sd)
        threshold = float(past.mean()) - 2 * spread
        basis = (
            f"mean of {len(past)} past score(s) {past.mean():.3f} minus 2 x {spread:.3f}"
            f" (spread of past scores {history_sd:.3f}, by chance at this batch size"
            f" {chance_sd:.3f})"
        )
    elif method == "nonparametric":
        use_past = len(past) >= MIN_HISTORY_FOR_QUARTILES
        reference = past if use_past else chance
        q1, q3 = np.quantile(reference, [0.25, 0.75])
        threshold = float(q1 - 1.5 * (q3 - q1))
        source = f"{len(past)} past scores" if use_past else "resampled batches of this size"
        basis = f"Q1 - 1.5 IQR of {source}"
    else:
        raise ValueError(f"unknown drift check {method!r}; use one of {HISTORY_CHECKS}")
    return {
        "method": method,
        "score": round(float(new_score), 6),
        "threshold": round(threshold, 6),
        "basis": basis,
        "drift": bool(new_score < threshold),
    }


# --- is the model still right on this batch? ----------------------------------------------------

SIMULATIONS = 2000
# Above this many rows the counts of a simulated batch are drawn from their normal approximation.
EXACT_SIMULATION_ROWS = 5000
PROBABILITY_FLOOR = 1e-6


def log_loss_excess(labels, probabilities, weights=None):
    """How much the log loss exceeds what the probabilities themselves expect.

    Args:
        weights: one per row (rows weighed by age), or None for equal weights.

    Returns:
        (mean excess, its variance if the labels followed the probabilities).
    """
    y = np.asarray(labels, dtype=float)
    p = np.clip(np.asarray(probabilities, dtype=float), PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
    w = np.ones_like(p) if weights is None else np.asarray(weights, dtype=float)
    loss = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    entropy = -(p * np.log(p) + (1 - p) * np.log(1 - p))
    variance = float(np.sum(w**2 * p * (1 - p) * np.log(p / (1 - p)) ** 2)) / w.sum() ** 2
    return float(np.sum(w * (loss - entropy)) / w.sum()), variance


def simulate_batch(probabilities, predictions, simulations: int = SIMULATIONS, seed: int = 0):
    """What the model expects on these very rows if it is right about them: labels drawn from
    `probabilities`, `simulations` times.

    Returns:
        (F1 of `predictions` per simulation, log-loss excess per simulation); above
        EXACT_SIMULATION_ROWS rows, from the normal approximations of the counts and the excess.
    """
    p = np.clip(np.asarray(probabilities, dtype=float), PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
    flagged = np.asarray(predictions, dtype=bool)
    rng = np.random.default_rng(seed)
    if len(p) <= EXACT_SIMULATION_ROWS:
        logit = np.log(p / (1 - p))
        constant = -np.mean(np.log(1 - p)) + np.mean(p * np.log(p) + (1 - p) * np.log(1 - p))
        true_positive, missed, excess = [], [], []
        for start in range(0, simulations, 200):
            labels = rng.random((min(200, simulations - start), len(p))) < p
            true_positive.append((labels & flagged).sum(axis=1))
            missed.append((labels & ~flagged).sum(axis=1))
            excess.append(constant - labels @ logit / len(p))
        true_positive, missed = np.concatenate(true_positive), np.concatenate(missed)
        excess = np.concatenate(excess)
    else:

        def draw(values):
            spread = np.sqrt(np.sum(values * (1 - values)))
            return np.clip(rng.normal(values.sum(), spread, simulations).round(), 0, len(values))

        true_positive, missed = draw(p[flagged]), draw(p[~flagged])
        excess = rng.normal(0.0, np.sqrt(log_loss_excess(p, p)[1]), simulations)
    false_positive = flagged.sum() - true_positive
    denominator = 2 * true_positive + false_positive + missed
    f1 = np.divide(2 * true_positive, denominator, out=np.zeros(simulations), where=denominator > 0)
    return f1, excess


# A model is drifting in log loss when it is worse on a batch than on its own market's data by
# more than this (nats; about 5 % of its log loss): a model is never exactly calibrated, and a
# test with no margin flags any tiny miscalibration once batches are large.
LOG_LOSS_TOLERANCE = 0.02
# Likewise for F1 (about 4 % of the shipped model's): with none, a model whose probabilities are
# a shade confident near its threshold is flagged in ~5 % of unchanged 1,000-row batches instead
# of 2.5 %, twice what the test promises.
F1_TOLERANCE = 0.02


def model_still_right(labels, probabilities, predictions, reference: dict, alpha: float = 0.05):
    """Judge a batch by what the deployed model's own probabilities predict for it.

    Two one-sided tests, each at alpha / 2, both simulated on these very rows: is the batch's F1
    below what the model expects by more than F1_TOLERANCE, and does its log loss exceed what the
    probabilities expect by more than the excess the model showed on its own market's data
    (`reference`) plus LOG_LOSS_TOLERANCE?

    Args:
        labels, probabilities, predictions: the batch's outcomes and the model's answers.
        reference: {"excess": ..., "variance": ..., "rows": ..., "dataset": ...} of the data the
            model was judged on when deployed.

    Returns:
        dict with `drift` (bool), the observed and expected F1 and log loss, p-values and words.
    """
    from scipy.stats import norm

    labels = np.asarray(labels, dtype=int)
    predictions = np.asarray(predictions, dtype=int)
    true_positive = int(np.sum((labels == 1) & (predictions == 1)))
    errors = int(np.sum(labels != predictions))
    f1 = 2 * true_positive / (2 * true_positive + errors) if true_positive + errors else 0.0
    expected_f1, expected_excess = simulate_batch(probabilities, predictions)
    p_f1 = float(np.mean(expected_f1 - F1_TOLERANCE <= f1))
    excess, _ = log_loss_excess(labels, probabilities)
    beyond = excess - reference["excess"] - LOG_LOSS_TOLERANCE
    # The reference was measured on a sample too: its own noise widens the null distribution.
    spread = np.sqrt(reference["variance"])
    if spread > 0:
        p_log_loss = float(np.mean(1 - norm.cdf((beyond - expected_excess) / spread)))
    else:
        p_log_loss = float(np.mean(expected_excess >= beyond))
    f1_low = float(np.quantile(expected_f1, alpha / 2)) - F1_TOLERANCE
    drift = bool(p_f1 < alpha / 2 or p_log_loss < alpha / 2)
    basis = (
        f"F1 {f1:.3f} where the model expects {np.median(expected_f1):.3f} on these rows"
        f" (below {f1_low:.3f} is drift, p = {p_f1:.3g}); log loss exceeds its own expectation"
        f" by {excess:+.4f} against {reference['excess']:+.4f} on {reference['dataset']}"
        f" (more than {LOG_LOSS_TOLERANCE} beyond it is drift, p = {p_log_loss:.3g})"
    )
    return {
        "method": "calibrated",
        "score": round(f1, 6),
        "expected_f1": round(float(np.median(expected_f1)), 6),
        "threshold": round(f1_low, 6),
        "p_f1": round(p_f1, 6),
        "log_loss_excess": round(excess, 6),
        "reference_excess": round(float(reference["excess"]), 6),
        "tolerance": LOG_LOSS_TOLERANCE,
        "p_log_loss": round(p_log_loss, 6),
        "alpha": alpha,
        "basis": basis,
        "drift": drift,
    }


# --- a retrained model against the live one ------------------------------------------------------

COMPARISON_ALPHA = 0.05


def paired_log_loss(labels, challenger_probabilities, champion_probabilities) -> dict:
    """Compare two models row by row on the same rows, by log loss (lower is better).

    Returns:
        dict with the mean difference (challenger minus champion) and its standard error, a
        two-sided 95 % interval, one-sided p-values for "challenger better" and "challenger
        worse", and the verdict: "better", "worse" or "too close to call".
    """
    from scipy.stats import norm

    y = np.asarray(labels, dtype=float)

    def losses(probabilities):
        p = np.clip(
            np.asarray(probabilities, dtype=float), PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR
        )
        return -(y * np.log(p) + (1 - y) * np.log(1 - p))

    champion, challenger = losses(champion_probabilities), losses(challenger_probabilities)
    difference = challenger - champion
    mean = float(difference.mean())
    error = float(difference.std(ddof=1) / np.sqrt(len(difference))) if len(y) > 1 else 0.0
    z = mean / error if error > 0 else 0.0
    p_better, p_worse = float(norm.cdf(z)), float(1 - norm.cdf(z))
    if p_worse < COMPARISON_ALPHA:
        verdict = "worse"
    elif p_better < COMPARISON_ALPHA:
        verdict = "better"
    else:
        verdict = "too close to call"
    return {
        "rows": len(y),
        "champion_log_loss": round(float(champion.mean()), 6),
        "challenger_log_loss": round(float(challenger.mean()), 6),
        "difference": round(mean, 6),
        "standard_error": round(error, 6),
        "interval_95": [round(mean - 1.96 * error, 6), round(mean + 1.96 * error, 6)],
        "p_better": round(p_better, 6),
        "p_worse": round(p_worse, 6),
        "verdict": verdict,
    }
