"""Statistics that say whether new client data differs from the data the model was trained on.

The verdict comes from a test that knows the sample sizes: a two-sample Kolmogorov-Smirnov test per
feature, with the Benjamini-Hochberg correction across features (a feature drifts when its adjusted
p-value is below KS_ALPHA). A fixed distance threshold cannot do this: on a 20-row batch the
distance is mostly noise, on a 100,000-row batch a harmless shift crosses it. The population
stability index is reported beside the test as the size of the change, flagged from
PSI_MAJOR (the usual reading: below 0.1 no real change, 0.1-0.25 moderate, 0.25 and above major).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import false_discovery_control, ks_2samp

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
