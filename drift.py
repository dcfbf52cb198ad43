"""Statistics that say whether new client data, or the model's score on it, has drifted.

Data drift: whether new client data differs from the data the model was trained on.

The verdict comes from a test that knows the sample sizes: a two-sample Kolmogorov-Smirnov test per
feature, with the Benjamini-Hochberg correction across features (a feature drifts when its adjusted
p-value is below KS_ALPHA). A fixed distance threshold cannot do this: on a 20-row batch the
distance is mostly noise, on a 100,000-row batch a harmless shift crosses it. The population
stability index is reported beside the test as the size of the change, flagged from
PSI_MAJOR (the usual reading: below 0.1 no real change, 0.1-0.25 moderate, 0.25 and above major).

Model drift: whether the deployed model's F1 on a new batch is worse than its past scores, by one
of the three classic checks (`score_drift`). The past scores of one model rarely number more than
a handful, and an F1 on a batch of n rows scatters by an amount that depends on n; so the spread
the parametric check allows, and the reference sample of the non-parametric check while the
history is short, also come from `sampling_f1`: the F1 the deployed model gets on resampled
batches of the same size from the test data, that is, when nothing has changed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import false_discovery_control, ks_2samp

from project import SCORE_CHECKS

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
        raise ValueError(f"unknown drift check {method!r}; use one of {SCORE_CHECKS}")
    return {
        "method": method,
        "score": round(float(new_score), 6),
        "threshold": round(threshold, 6),
        "basis": basis,
        "drift": bool(new_score < threshold),
    }
