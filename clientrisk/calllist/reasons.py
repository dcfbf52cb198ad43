"""Why a client is at risk, in words: each factor's effect on the live model's probability.

Reasons are honest to the deployed model: for each of three factors the probability is computed
again with that factor alone set to what is typical, and the fall is the factor's effect, in
probability points. The factors, and their typical values:

* recent activity: last month as an average month of the client's own year (last year / 12);
* activity over the year: the training data's median, last month scaled with it (same trend);
* company size: the training data's median head count.

A factor is a reason when it raises the probability by at least MIN_EFFECT; the strongest three
are kept. The typical values are the medians the deployed model's imputer learnt, so reasons
change when the model does.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from clientrisk.data.clientcsv import FEATURES, MAX_COUNT
from clientrisk.errors import DataError
from clientrisk.model import scoring

MAX_REASONS = 3
MIN_EFFECT = 0.01  # a factor moving the probability less than a point is not a reason
# A larger change of activity (against a year of a fraction of an action) is shown as "over".
MAX_SHOWN_CHANGE = 1e4


# Clients explained per call of the model (with their counterfactuals, four times as many rows).
EXPLAIN_BLOCK_ROWS = 100_000
FACTORS = ("recent activity", "activity over the year", "company size")


MONTH, YEAR, EMPLOYEES = range(3)
REASON_COLUMNS = tuple(f"reason_{n}" for n in range(1, MAX_REASONS + 1))


EFFECT_COLUMNS = tuple(f"effect of {factor}" for factor in FACTORS)


def typical_values(model) -> np.ndarray:
    """The medians of the raw feature columns the model's imputer learnt from its training data."""
    steps = getattr(model, "named_steps", {})
    imputer = steps.get("impute")
    statistics = getattr(imputer, "statistics_", None)
    if statistics is None or len(statistics) != len(FEATURES):
        raise DataError("the deployed model has no learnt medians to explain its predictions by")
    return np.asarray(statistics, dtype=float)


def counterfactuals(values: np.ndarray, typical: np.ndarray) -> list[np.ndarray]:
    """For each factor, the rows with that factor alone set to what is typical."""
    month, year = values[:, MONTH], values[:, YEAR]
    known_year = np.where(np.isnan(year), typical[YEAR], year)

    recent = values.copy()
    recent[:, MONTH] = known_year / 12

    yearly = values.copy()
    yearly[:, YEAR] = typical[YEAR]
    # A year of a tiny fraction of an action would scale the month beyond any count.
    with np.errstate(over="ignore", divide="ignore"):
        scale = np.divide(typical[YEAR], year, out=np.ones_like(year), where=(year > 0))
        scaled = np.minimum(month * scale, MAX_COUNT)
    yearly[:, MONTH] = np.where(np.isnan(year), month, scaled)

    size = values.copy()
    size[:, EMPLOYEES] = typical[EMPLOYEES]
    return [recent, yearly, size]


def explain(model, rows: pd.DataFrame):
    """Predictions of `model` for `rows`, and each factor's effect on every probability.

    One call of the model for a block of rows and all their counterfactuals together, so
    explaining one record costs about what predicting it does.

    Returns:
        (labels, probabilities, effects of shape (rows, factors), the raw feature values, the
        typical values), all arrays.
    """
    values = rows[list(FEATURES)].to_numpy(dtype=float, na_value=np.nan)
    typical = typical_values(model)
    if not len(values):  # no current client at all: nothing to ask the model
        nothing = np.empty(0)
        return nothing.astype(int), nothing, np.empty((0, len(FACTORS))), values, typical
    labels = np.empty(len(values), dtype=int)
    probabilities = np.empty(len(values))
    effects = np.empty((len(values), len(FACTORS)))
    # A block of clients at a time: the model's design matrix of all of them and their
    # counterfactuals at once would take gigabytes for millions of clients.
    for start in range(0, len(values), EXPLAIN_BLOCK_ROWS):
        block = slice(start, start + EXPLAIN_BLOCK_ROWS)
        part = values[block]
        stacked = np.vstack([part, *counterfactuals(part, typical)])
        predicted, stacked_probabilities = scoring.predict_arrays(
            model, pd.DataFrame(stacked, columns=list(FEATURES), copy=False)
        )
        stacked_probabilities = stacked_probabilities.reshape(1 + len(FACTORS), len(part))
        labels[block] = predicted[: len(part)]
        probabilities[block] = stacked_probabilities[0]
        effects[block] = (stacked_probabilities[0] - stacked_probabilities[1:]).T
    return labels, probabilities, effects, values, typical


def predict_in_blocks(model, rows: pd.DataFrame):
    """(labels, probabilities) of `model` for `rows`, a few blocks of rows per call."""
    values = rows[list(FEATURES)].to_numpy(dtype=float, na_value=np.nan)
    labels = np.empty(len(values), dtype=int)
    probabilities = np.empty(len(values))
    step = EXPLAIN_BLOCK_ROWS * (1 + len(FACTORS))  # as many rows as one explained block
    for start in range(0, len(values), step):
        block = slice(start, start + step)
        frame = pd.DataFrame(values[block], columns=list(FEATURES), copy=False)
        labels[block], probabilities[block] = scoring.predict_arrays(model, frame)
    return labels, probabilities


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 10 else f"{value:.2g}"


def describe(factor: int, row: np.ndarray, typical: np.ndarray) -> str:
    """A factor of one client in words a manager reads and numbers a data scientist can check."""
    month, year, employees = row
    if factor == MONTH:
        if math.isnan(month):
            return "no figure for last month's activity"
        if month == 0:
            average = "" if math.isnan(year) or year <= 0 else f" (average {_number(year / 12)})"
            return "no activity last month" + average
        if math.isnan(year):
            return f"activity last month {_number(month)}, no figure for the year"
        if year <= 0:
            return f"activity last month {_number(month)}, none over the year before"
        with np.errstate(over="ignore", divide="ignore"):
            change = float(np.float64(month) * 12 / year - 1)
        side = "below" if change < 0 else "above"
        amount = (
            f"{abs(change):.0%}" if change <= MAX_SHOWN_CHANGE else f"over {MAX_SHOWN_CHANGE:,.0%}"
        )
        return (
            f"activity last month {amount} {side} its monthly average over the year"
            f" ({_number(month)} vs {_number(year / 12)})"
        )
    if factor == YEAR:
        if math.isnan(year):
            return "no figure for last year's activity"
        level = "low" if year < typical[YEAR] else "high"
        return f"{level} activity over the year ({_number(year)}; typical {_number(typical[YEAR])})"
    if math.isnan(employees):
        return "no head count on record"
    ratio = employees / typical[EMPLOYEES]
    size = "small" if ratio < 0.5 else "large" if ratio > 2 else "mid-sized"
    return f"{size} company ({_number(employees)} employees; typical {_number(typical[EMPLOYEES])})"


def reasons(effects: np.ndarray, values: np.ndarray, typical: np.ndarray) -> list[list[dict]]:
    """The strongest factors raising each probability: factor, reason in words, effect."""
    found = []
    for index, factors in enumerate(_strongest(effects)):
        row = values[index]
        found.append(
            [
                {
                    "factor": FACTORS[factor],
                    "reason": describe(factor, row, typical),
                    "effect": round(float(effects[index, factor]), 4),
                }
                for factor in factors
            ]
        )
    return found


def reason_columns(effects: np.ndarray, values: np.ndarray, typical: np.ndarray) -> list[list]:
    """The reasons as text, `reason (+effect)`, in MAX_REASONS columns ("" where none)."""
    columns = [[""] * len(effects) for _ in range(MAX_REASONS)]
    for index, factors in enumerate(_strongest(effects)):
        row = values[index]
        for position, factor in enumerate(factors):
            text = describe(factor, row, typical)
            columns[position][index] = f"{text} (+{effects[index, factor]:.2f})"
    return columns


def _strongest(effects: np.ndarray) -> list[list[int]]:
    """Per row, the factors that are reasons (an effect of at least MIN_EFFECT), strongest
    first, at most MAX_REASONS."""
    order = np.argsort(-effects, axis=1, kind="stable")[:, :MAX_REASONS]
    strong = np.take_along_axis(effects, order, axis=1) >= MIN_EFFECT
    return [
        [int(factor) for factor, kept in zip(factors, keep, strict=True) if kept]
        for factors, keep in zip(order.tolist(), strong.tolist(), strict=True)
    ]


def reason_text(item: dict) -> str:
    return f"{item['reason']} (+{item['effect']:.2f})"
