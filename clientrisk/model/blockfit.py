"""Logistic regression fitted a block of rows at a time: scikit-learn's model, bounded memory.

scikit-learn's Newton solver weighs the whole design matrix at every step (a second matrix as
large as the data: 1.3 GB more for ten million rows of the model's 33 columns). Here the
gradient and the Hessian are summed over blocks of rows, so a step needs memory for one block,
and the result is an ordinary fitted `LogisticRegression` (same objective: C times the weighted
log loss plus half the squared coefficients, the intercept unpenalised).
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.utils.class_weight import compute_class_weight

BLOCK_ROWS = 250_000
MAX_ITER = 100
# Stop when no coefficient's gradient, relative to the data's weight, exceeds this.
TOLERANCE = 1e-7


def fit_logistic(
    design: np.ndarray,
    target: np.ndarray,
    C: float = 1.0,
    class_weight=None,
    sample_weight=None,
    **params,
) -> LogisticRegression:
    """A fitted LogisticRegression(C=C, class_weight=class_weight, **params) for the rows of
    `design` (float32 or float64) and the 0/1 `target`, found by Newton steps over blocks."""
    classes = np.array([0, 1])
    weights = compute_class_weight(class_weight, classes=classes, y=target)
    row_weight = weights[target]
    if sample_weight is not None:
        row_weight = row_weight * np.asarray(sample_weight, dtype=float)
    columns = design.shape[1]
    coefficients = np.zeros(columns + 1)  # the last is the intercept
    penalty = np.r_[np.ones(columns), 0.0] / C
    scale = row_weight.sum()
    objective, gradient, hessian = _evaluate(design, target, row_weight, coefficients, penalty)
    iterations = 0
    while iterations < MAX_ITER:
        if np.abs(gradient).max() <= TOLERANCE * scale:
            break
        iterations += 1
        step = _solve(hessian, gradient)
        # One pass over the rows per step; halved only when the objective would rise.
        for _ in range(30):
            trial = coefficients - step
            found = _evaluate(design, target, row_weight, trial, penalty)
            if found[0] <= objective:
                break
            step = step / 2
        else:
            break
        decrease = objective - found[0]
        coefficients, (objective, gradient, hessian) = trial, found
        if decrease <= 1e-12 * max(1.0, abs(objective)):
            break
    model = LogisticRegression(C=C, class_weight=class_weight, **params)
    model.classes_ = classes
    model.coef_ = coefficients[None, :columns].copy()
    model.intercept_ = coefficients[columns:].copy()
    model.n_features_in_ = columns
    model.n_iter_ = np.array([iterations], dtype=np.int32)
    return model


def _blocks(rows: int):
    for start in range(0, rows, BLOCK_ROWS):
        yield slice(start, start + BLOCK_ROWS)


def _margin(block: np.ndarray, coefficients: np.ndarray) -> np.ndarray:
    return block @ coefficients[:-1] + coefficients[-1]


def _evaluate(design, target, row_weight, coefficients, penalty):
    """The objective (the weighted log loss summed, plus the penalty over C: scikit-learn's
    objective over C), its gradient and its Hessian at `coefficients`, in one pass."""
    columns = design.shape[1]
    total = 0.5 * float(penalty @ coefficients**2)
    gradient = penalty * coefficients
    hessian = np.diag(penalty)
    for rows in _blocks(len(design)):
        given = design[rows]
        block = given.astype(float, copy=False)
        margin = _margin(block, coefficients)
        weight, truth = row_weight[rows], target[rows]
        # log(1 + e^m) - y m, without overflow.
        total += float(weight @ (np.logaddexp(0.0, margin) - truth * margin))
        probability = 1.0 / (1.0 + np.exp(-margin))
        residual = weight * (probability - truth)
        curvature = weight * probability * (1.0 - probability)
        # The curvature in the data's own precision (float32 halves its cost; the Hessian only
        # sets the step, the gradient in float64 decides where the steps end).
        weighted = given * curvature.astype(given.dtype)[:, None]
        gradient[:columns] += residual @ block
        gradient[columns] += residual.sum()
        hessian[:columns, :columns] += given.T @ weighted
        hessian[:columns, columns] += weighted.sum(axis=0, dtype=float)
        hessian[columns, columns] += curvature.sum()
    hessian[columns, :columns] = hessian[:columns, columns]
    return total, gradient, hessian


def _solve(hessian: np.ndarray, gradient: np.ndarray) -> np.ndarray:
    try:
        factor = np.linalg.cholesky(hessian)
    except np.linalg.LinAlgError:  # nearly flat along some direction: least squares instead
        return np.linalg.lstsq(hessian, gradient, rcond=None)[0]
    return np.linalg.solve(factor.T, np.linalg.solve(factor, gradient))
