"""Why a client is at risk, in words: each factor's effect on the live model's probability.

Reasons are honest to the deployed model: for each of three factors the probability is computed
again with that factor alone set to what is typical, and the fall is the factor's effect, in
points of risk. The factors, and their typical values:

* recent activity: last month as an average month of the client's own year (last year / 12);
* activity over the year: the training data's median, last month scaled with it (same trend);
* company size: the training data's median head count.

A factor is a reason when it raises the probability by at least MIN_EFFECT; the strongest three
are kept. A client with none gets one all the same, said as what it is: its figures together
(the probability again with all three typical) when they raise it by MIN_EFFECT, else the
factor that raises it most, introduced as "no single figure raises its risk by a point". Each
reason says what the figure is, why it matters (clients like it leave more often) and what the
risk would be without it: "risk 31 % → 12 % if activity were at its usual level". The typical
values are the medians the deployed model's imputer learnt, so reasons change when the model
does.
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
# The fourth effect: all three factors typical at once.
TOGETHER = "its figures together"


MONTH, YEAR, EMPLOYEES, JOINT = range(4)
REASON_COLUMNS = tuple(f"reason_{n}" for n in range(1, MAX_REASONS + 1))


EFFECT_COLUMNS = tuple(f"effect of {factor}" for factor in (*FACTORS, TOGETHER))
WEAK = "no single figure raises its risk by a point; the largest: "


def typical_values(model) -> np.ndarray:
    """The medians of the raw feature columns the model's imputer learnt from its training data."""
    steps = getattr(model, "named_steps", {})
    imputer = steps.get("impute")
    statistics = getattr(imputer, "statistics_", None)
    if statistics is None or len(statistics) != len(FEATURES):
        raise DataError("the deployed model has no learnt medians to explain its predictions by")
    return np.asarray(statistics, dtype=float)


def counterfactuals(values: np.ndarray, typical: np.ndarray) -> list[np.ndarray]:
    """For each factor, the rows with that factor alone set to what is typical; then the rows
    with all three typical (an average month of the typical year, the typical head count)."""
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
    together = np.empty_like(values)
    together[:] = [typical[YEAR] / 12, typical[YEAR], typical[EMPLOYEES]]
    return [recent, yearly, size, together]


def explain(model, rows: pd.DataFrame):
    """Predictions of `model` for `rows`, and each factor's effect on every probability.

    One call of the model for a block of rows and all their counterfactuals together, so
    explaining one record costs about what predicting it does.

    Returns:
        (labels, probabilities, effects of shape (rows, factors and TOGETHER), the raw feature
        values, the typical values), all arrays.
    """
    values = rows[list(FEATURES)].to_numpy(dtype=float, na_value=np.nan)
    typical = typical_values(model)
    if not len(values):  # no current client at all: nothing to ask the model
        nothing = np.empty(0)
        return nothing.astype(int), nothing, np.empty((0, len(EFFECT_COLUMNS))), values, typical
    labels = np.empty(len(values), dtype=int)
    probabilities = np.empty(len(values))
    effects = np.empty((len(values), len(EFFECT_COLUMNS)))
    # A block of clients at a time: the model's design matrix of all of them and their
    # counterfactuals at once would take gigabytes for millions of clients.
    for start in range(0, len(values), EXPLAIN_BLOCK_ROWS):
        block = slice(start, start + EXPLAIN_BLOCK_ROWS)
        part = values[block]
        stacked = np.vstack([part, *counterfactuals(part, typical)])
        predicted, stacked_probabilities = scoring.predict_arrays(
            model, pd.DataFrame(stacked, columns=list(FEATURES), copy=False)
        )
        stacked_probabilities = stacked_probabilities.reshape(1 + len(EFFECT_COLUMNS), len(part))
        labels[block] = predicted[: len(part)]
        probabilities[block] = stacked_probabilities[0]
        effects[block] = (stacked_probabilities[0] - stacked_probabilities[1:]).T
    return labels, probabilities, effects, values, typical


def predict_in_blocks(model, rows: pd.DataFrame):
    """(labels, probabilities) of `model` for `rows`, a few blocks of rows per call."""
    values = rows[list(FEATURES)].to_numpy(dtype=float, na_value=np.nan)
    labels = np.empty(len(values), dtype=int)
    probabilities = np.empty(len(values))
    step = EXPLAIN_BLOCK_ROWS * (1 + len(EFFECT_COLUMNS))  # as many rows as one explained block
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
            f"activity last month {amount} {side} its monthly average"
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


def why(factor: int, row: np.ndarray, typical: np.ndarray, effect: float) -> str:
    """Why the factor moves this client's risk, in words: who leave more (or less) often."""
    month, year, employees = row
    more = (
        "more often" if effect > 5e-4 else "less often" if effect < -5e-4 else "as often as others"
    )
    if factor == MONTH:
        if math.isnan(month):
            who = "clients with no figure for last month"
        elif month == 0:
            who = "clients silent for a month"
        elif math.isnan(year) or year <= 0:
            who = "clients with no activity on record for the year"
        else:
            change = month * 12 / year - 1
            moves = "holds steady" if abs(change) < 0.1 else "falls" if change < 0 else "jumps"
            who = f"clients whose activity {moves} like this"
    elif factor == YEAR:
        if math.isnan(year):
            who = "clients with no figure for the year"
        else:
            who = f"clients this {'little ' if year < typical[YEAR] else ''}active over a year"
    elif factor == EMPLOYEES:
        if math.isnan(employees):
            who = "clients with no head count"
        else:
            ratio = employees / typical[EMPLOYEES]
            size = "this small" if ratio < 0.5 else "this large" if ratio > 2 else "of this size"
            who = f"companies {size}"
    else:
        who = "clients with these figures"
    return f"{who} leave {more}"


def if_typical(factor: int) -> str:
    """The counterfactual of a factor, in words (its typical value is in the reason)."""
    return (
        "if activity were at its usual level",
        "if its year were typical, last month in step",
        "if it were of typical size",
        "if all its figures were typical",
    )[factor]


def describe_together(row: np.ndarray, typical: np.ndarray) -> str:
    """A client's three figures in a few words, for the reason of its figures together."""
    month, year, employees = row
    figures = ", ".join(
        [
            "no figure for last month" if math.isnan(month) else f"last month {_number(month)}",
            "no figure for the year" if math.isnan(year) else f"the year {_number(year)}",
            "no head count" if math.isnan(employees) else f"{_number(employees)} employees",
        ]
    )
    return (
        f"its figures together ({figures}; typical {_number(typical[YEAR] / 12)},"
        f" {_number(typical[YEAR])}, {_number(typical[EMPLOYEES])})"
    )


def percents(risk: float, other: float) -> tuple[str, str]:
    """Two risks as people read them, with as many decimals as it takes to tell them apart (up
    to two), never a certain 0 % or 100 %."""
    for decimals in (0, 1, 2):
        shown = (_percent(risk, decimals), _percent(other, decimals))
        if shown[0] != shown[1]:
            break
    return shown


def _percent(probability: float, decimals: int) -> str:
    value, step = round(probability * 100, decimals), 10.0**-decimals
    if value >= 100:
        return f"> {100 - step:.{decimals}f} %"
    if value <= 0:
        return f"< {step:.{decimals}f} %"
    return f"{value:.{decimals}f} %"


def reason_item(
    factor: int, row: np.ndarray, typical: np.ndarray, probability: float, effect: float
) -> dict:
    """One reason: factor, the figure and why it matters, its effect, and the sentence."""
    described = (
        describe_together(row, typical) if factor == JOINT else describe(factor, row, typical)
    )
    reason = f"{described}; {why(factor, row, typical, effect)}"
    if factor != JOINT and effect < MIN_EFFECT:
        reason = WEAK + reason
    now, without = percents(probability, probability - effect)
    return {
        "factor": (*FACTORS, TOGETHER)[factor],
        "reason": reason,
        "effect": round(float(effect), 4),
        "risk_if_typical": round(float(probability - effect), 6),
        "text": f"{reason}: risk {now} → {without} {if_typical(factor)}",
    }


def reasons(
    effects: np.ndarray, values: np.ndarray, typical: np.ndarray, probabilities: np.ndarray
) -> list[list[dict]]:
    """Each client's reasons, strongest first (at least one): factor, the figure and why it
    matters in words, its effect, the risk without it, and the sentence a manager can say."""
    found = []
    for index, factors in enumerate(_strongest(effects)):
        row, probability = values[index], float(probabilities[index])
        found.append(
            [
                reason_item(factor, row, typical, probability, float(effects[index, factor]))
                for factor in factors
            ]
        )
    return found


def reason_columns(
    effects: np.ndarray, values: np.ndarray, typical: np.ndarray, probabilities: np.ndarray
) -> list[list]:
    """The reasons' sentences in MAX_REASONS columns ("" where a client has fewer)."""
    columns = [[""] * len(effects) for _ in range(MAX_REASONS)]
    for index, items in enumerate(reasons(effects, values, typical, probabilities)):
        for position, item in enumerate(items):
            columns[position][index] = item["text"]
    return columns


def _strongest(effects: np.ndarray) -> list[list[int]]:
    """Per row, the factors that are reasons (an effect of at least MIN_EFFECT), strongest
    first, at most MAX_REASONS; for a row with none, its figures together when they are one,
    else the factor with the largest effect."""
    single = effects[:, : len(FACTORS)]
    order = np.argsort(-single, axis=1, kind="stable")[:, :MAX_REASONS]
    strong = np.take_along_axis(single, order, axis=1) >= MIN_EFFECT
    together = effects[:, JOINT] >= MIN_EFFECT if effects.shape[1] > JOINT else strong[:, 0]
    found = []
    for factors, keep, joint in zip(
        order.tolist(), strong.tolist(), together.tolist(), strict=True
    ):
        kept = [int(factor) for factor, chosen in zip(factors, keep, strict=True) if chosen]
        found.append(kept or ([JOINT] if joint else [int(factors[0])]))
    return found


def reason_text(item: dict) -> str:
    """The sentence of a reason (for a reason written by an earlier version: with its effect)."""
    return item.get("text") or f"{item['reason']} (+{item['effect']:.2f})"
