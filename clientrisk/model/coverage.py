"""Whether a client's figures lie inside what the model learnt from.

The model takes a figure beyond the range of its training data at the edge of that range (it
never extrapolates), so the risk it gives such a client is that of the nearest training clients:
a guess, to be treated as uncertain. The ranges are those of the model's continuous features
(the logarithm of each count, and last month against the year), kept by its imputer when it was
fitted; a model fitted before the imputer kept them gives its spline basis's range, and a model
with neither marks no one.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "FEATURE_NAMES",
    "UNCERTAIN",
    "feature_range",
    "outside_mask",
    "outside_range",
    "outside_text",
]

# The continuous features in the order the model holds them, as people name them.
FEATURE_NAMES = (
    "lastmonth_activity",
    "lastyear_activity",
    "number_of_employees",
    "last month against the year",
)
BLOCK_ROWS = 250_000  # rows checked at a time
UNCERTAIN = "outside the range the model has seen: treat the risk as uncertain"


def feature_range(model):
    """(lowest, highest) of each continuous feature in the model's training data, or None."""
    steps = getattr(model, "named_steps", {})
    for name, lower, upper in (
        ("impute", "feature_lower_", "feature_upper_"),
        ("spline", "lower_", "upper_"),
    ):
        step = steps.get(name)
        low, high = getattr(step, lower, None), getattr(step, upper, None)
        if low is not None and len(low) >= len(FEATURE_NAMES):
            return np.asarray(low[: len(FEATURE_NAMES)]), np.asarray(high[: len(FEATURE_NAMES)])
    return None


def outside_mask(model, values: np.ndarray) -> np.ndarray:
    """Which continuous features of each row of raw client figures (the three feature columns,
    an array) lie outside the range the model learnt from: a boolean array (rows, features),
    all False for a model that kept no range."""
    from clientrisk.model.features import client_features

    values = np.asarray(values, dtype=float)
    outside = np.zeros((len(values), len(FEATURE_NAMES)), dtype=bool)
    limits = feature_range(model)
    if limits is None:
        return outside
    lower, upper = limits
    imputer = model.named_steps["impute"]
    for start in range(0, len(values), BLOCK_ROWS):
        block = slice(start, start + BLOCK_ROWS)
        features = client_features(imputer.transform(values[block]))[:, : len(FEATURE_NAMES)]
        with np.errstate(invalid="ignore"):
            outside[block] = (features < lower) | (features > upper)
    return outside


def outside_range(model, values: np.ndarray) -> list[list[str]]:
    """For each row of raw client figures, the names of the features outside the range the
    model learnt from ([] for a row inside it)."""
    outside = outside_mask(model, values)
    names = np.array(FEATURE_NAMES, dtype=object)
    found = [[] for _ in range(len(outside))]
    for index in np.flatnonzero(outside.any(axis=1)):
        found[index] = names[outside[index]].tolist()
    return found


def outside_text(names: list[str]) -> str:
    """The note for a client outside the range, naming the features ("" for one inside)."""
    return f"{UNCERTAIN} ({', '.join(names)})" if names else ""
