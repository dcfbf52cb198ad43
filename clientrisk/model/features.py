"""The model's own transformers: gaps filled without inventing a trend, and the spline basis.

A median in place of a missing count breaks the ratio the model lives on: a client with 9 actions
last year and no figure for last month would get the median month (about 50) and a trend of +3.3,
far outside anything seen, and the splines extrapolate it into a near-certain exit. So a missing
last month is taken as an average month of the client's own year, a missing year as twelve such
months, and what is still missing (a head count, or a year with no month to go by) is what the
known columns make likely: the expected value on the log scale, learnt from the complete training
rows (no activity last month says nothing of the year, so a silent client's year goes by its head
count alone). Every column's gap stays visible to the model as an indicator.

`SplineBasis` turns the continuous features into cubic B-splines (see its docstring), and
`Interactions` adds the products of pairs of them, for markets where a combination of features
drives leaving. Neither extrapolates beyond the training data: a value beyond the range seen in
training is taken at its edge, so the risk of a client unlike any training row is that of the
nearest ones, never a slope carried on into a near-certain exit. The imputer keeps the range of
every continuous feature (`feature_lower_`, `feature_upper_`), whatever the model family, so that
a client outside it can be marked (`clientrisk.model.coverage`).

Lives in its own module because pickled models refer to it by module, and importing scikit-learn
here keeps it out of what a quiet cron tick imports.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from clientrisk.data.clientcsv import MAX_COUNT

MONTH, YEAR, EMPLOYEES = 0, 1, 2
# An expected count is at most the largest count ingestion accepts (on the log scale).
MAX_LOG = float(np.log1p(MAX_COUNT))
# Narrower knot intervals are taken as a constant column: a value beyond the knots would
# otherwise be extrapolated by a slope of thousands of millions per unit.
MIN_KNOT_WIDTH = 1e-9
MIN_COMPLETE_ROWS = 10  # complete training rows needed to learn how the columns go together
BLOCK_ROWS = 16_384
# The continuous features of `client_features` (logarithms of the counts, and the trend): the
# imputer keeps the range of each as the training data had it.
CONTINUOUS_FEATURES = 4


class ActivityImputer(TransformerMixin, BaseEstimator):
    """Fill last month from last year and back, and what is left from the other columns.

    A missing last month is an average month of the client's own year, a missing year twelve of
    its months; a head count, or a year with no month to go by (missing, or silent), is the
    expected value on the log scale given the columns that are known (the conditional mean of a
    normal fitted to the logarithms of the complete training rows, which is what a regression on
    each set of known columns gives). The medians (`statistics_`) stand in when too few rows
    are complete. Transforms the raw columns (last month, last year, employees) into the filled
    columns followed by one missing-value indicator per column.
    """

    def fit(self, X, y=None):
        values = _floats(X)
        known = ~np.isnan(values)
        medians = np.zeros(values.shape[1])
        for column in range(values.shape[1]):
            if known[:, column].any():
                medians[column] = np.median(values[known[:, column], column])
        self.statistics_ = medians
        self.n_features_in_ = values.shape[1]
        complete = _logs(values[known.all(axis=1)])
        if len(complete) >= MIN_COMPLETE_ROWS:
            self.log_mean_ = complete.mean(axis=0)
            self.log_covariance_ = np.cov(complete, rowvar=False)
        else:  # nothing to learn how the columns go together from: the medians alone
            self.log_mean_ = _logs(medians)
            self.log_covariance_ = np.eye(values.shape[1])
        self.feature_lower_, self.feature_upper_ = self._feature_range(X)
        return self

    def _feature_range(self, X):
        """The lowest and highest value of each continuous model feature on the rows `X`, as
        filled by this imputer (a block of rows at a time)."""
        lowest = np.full(CONTINUOUS_FEATURES, np.inf)
        highest = np.full(CONTINUOUS_FEATURES, -np.inf)
        rows = X.iloc if hasattr(X, "iloc") else X
        for start in range(0, len(X), BLOCK_ROWS * 16):
            part = client_features(self.transform(rows[start : start + BLOCK_ROWS * 16]))
            part = part[:, :CONTINUOUS_FEATURES]
            lowest = np.fmin(lowest, np.nanmin(part, axis=0))
            highest = np.fmax(highest, np.nanmax(part, axis=0))
        return lowest, highest

    def transform(self, X):
        # Counts beyond what ingestion accepts are taken at its bound, so that no fill (twelve
        # months of a month, an expected value) and nothing derived from one overflows.
        values = np.clip(_floats(X), 0.0, MAX_COUNT)
        missing = np.isnan(values)
        month, year = values[:, MONTH], values[:, YEAR]
        month_only = ~missing[:, MONTH] & missing[:, YEAR] & (month > 0)
        year_only = missing[:, MONTH] & ~missing[:, YEAR]
        year[month_only] = month[month_only] * 12
        month[year_only] = year[year_only] / 12
        if not hasattr(self, "log_mean_"):  # a model saved before the columns were learnt
            still = np.isnan(values)
            values[still] = np.broadcast_to(self.statistics_, values.shape)[still]
            return np.hstack([values, missing.astype(float)])
        logs = _logs(values)
        # The head count from whichever activity columns are known.
        for given in ((MONTH, YEAR), (MONTH,), (YEAR,), ()):
            rows = missing[:, EMPLOYEES] & _known_exactly(missing, given, (MONTH, YEAR))
            values[rows, EMPLOYEES] = self._expected(logs[rows], EMPLOYEES, given)
        # A year with no month to go by, from the head count when known; its month follows.
        for given in ((EMPLOYEES,), ()):
            rows = np.isnan(year) & _known_exactly(missing, given, (EMPLOYEES,))
            year[rows] = self._expected(logs[rows], YEAR, given)
        month[np.isnan(month)] = year[np.isnan(month)] / 12
        return np.hstack([values, missing.astype(float)])

    def _expected(self, logs: np.ndarray, target: int, given: tuple) -> np.ndarray:
        """The conditional mean of the target column, back on the count scale."""
        mean, covariance = self.log_mean_, self.log_covariance_
        expected = np.full(len(logs), mean[target])
        if given and len(logs):
            given = list(given)
            slopes = np.linalg.lstsq(
                covariance[np.ix_(given, given)], covariance[given, target], rcond=None
            )[0]
            expected += (logs[:, given] - mean[given]) @ slopes
        return np.expm1(np.clip(expected, 0.0, MAX_LOG))


def _logs(values: np.ndarray) -> np.ndarray:
    # A subnormal count's log1p is the count itself: some CPUs' numpy flags it as an underflow,
    # which is harmless here (and would stop a caller running under np.errstate(all="raise")).
    with np.errstate(under="ignore"):
        return np.log1p(np.clip(values, 0.0, MAX_COUNT * 12))


def _known_exactly(missing: np.ndarray, given: tuple, among: tuple) -> np.ndarray:
    """Rows where, of the columns `among`, exactly those in `given` are known."""
    rows = np.ones(len(missing), dtype=bool)
    for column in among:
        rows &= missing[:, column] != (column in given)
    return rows


def _floats(X) -> np.ndarray:
    """A float copy of the rows, pandas' missing values (NA, None) as NaN."""
    if hasattr(X, "to_numpy"):
        return X.to_numpy(dtype=float, na_value=np.nan, copy=True)
    return np.array(X, dtype=float)


class SplineBasis(TransformerMixin, BaseEstimator):
    """Cubic B-splines on uniform knots for the first `columns` columns; the rest passed through.

    The same basis as scikit-learn's `SplineTransformer(n_knots=knots, degree=3,
    knots="uniform", extrapolation=extrapolation)`, computed directly: on uniform knots each value
    touches four basis functions whose weights are fixed cubics of its position in its interval,
    so a million rows take a few vector operations per column instead of a general spline
    evaluation. Flags (dormancy, missing values) are left as they are: a spline of a 0/1 column
    only repeats the flag.

    `extrapolation` "constant" (the default) takes a value beyond the training range at its edge;
    "linear" carries the slope at the edge on. Linear extrapolation made every client whose
    activity fell further than any training client's a near-certain leaver (47 current clients
    of the shipped data tied at 0.999999). A model pickled before the setting existed
    extrapolates as a constant too.
    """

    def __init__(self, columns: int = 4, knots: int = 5, extrapolation: str = "constant"):
        self.columns = columns
        self.knots = knots
        self.extrapolation = extrapolation

    def __setstate__(self, state):
        state.setdefault("extrapolation", "constant")
        super().__setstate__(state)

    def fit(self, X, y=None):
        values = np.asarray(X, dtype=float)[:, : self.columns]
        self.lower_ = np.nanmin(values, axis=0)
        self.upper_ = np.nanmax(values, axis=0)
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def transform(self, X):
        values = np.asarray(X)
        splines = self.knots + 2
        # np.empty, not np.zeros: numpy asks for huge pages for a large empty array, which fill
        # several times faster than the fresh zero pages np.zeros maps.
        out = np.empty(
            (len(values), self.columns * splines + values.shape[1] - self.columns),
            dtype=np.float32 if values.dtype == np.float32 else float,
        )
        # Blocks of rows keep every temporary small enough to be reused rather than mapped anew.
        for start in range(0, len(values), BLOCK_ROWS):
            block = slice(start, start + BLOCK_ROWS)
            self._transform_block(values[block], out[block], splines)
        return out

    def _transform_block(self, values, out, splines):
        out[:, : self.columns * splines] = 0.0
        starts = np.arange(len(values)) * out.shape[1]
        flat = out.reshape(-1)
        linear = self.extrapolation == "linear"
        for column in range(self.columns):
            x = values[:, column].astype(float)
            lower, upper = self.lower_[column], self.upper_[column]
            width = (upper - lower) / (self.knots - 1)
            width = width if width >= MIN_KNOT_WIDTH else 1.0
            inside = np.clip(x, lower, upper)
            position = (inside - lower) / width
            interval = np.minimum(position.astype(int), self.knots - 2)
            u = position - interval
            v = 1 - u
            u2, v2 = u * u, v * v
            beyond = (x - inside) / width if linear else 0.0
            # The four cubics at u, plus their slope times how far beyond the knots x lies.
            weights = (
                v2 * v / 6 - beyond * v2 / 2,
                (3 * u2 * u - 6 * u2 + 4) / 6 + beyond * (1.5 * u2 - 2 * u),
                (-3 * u2 * u + 3 * u2 + 3 * u + 1) / 6 + beyond * (-1.5 * u2 + u + 0.5),
                u2 * u / 6 + beyond * u2 / 2,
            )
            first = starts + column * splines + interval
            for offset, weight in enumerate(weights):
                flat[first + offset] = weight
        out[:, self.columns * splines :] = values[:, self.columns :]


class Interactions(TransformerMixin, BaseEstimator):
    """The products of each pair of the first `columns` columns, centred, after all columns.

    An additive model cannot say that small clients whose activity fell leave far more than
    "small" and "fell" add up to; a product of the two (each centred on its training mean, so
    that the product does not also shift the main effects) lets the regression learn it, and
    the regularisation chosen for the model keeps the products small where the data has no
    such structure.
    """

    def __init__(self, columns: int = 4):
        self.columns = columns

    def fit(self, X, y=None):
        values = np.asarray(X, dtype=float)
        self.means_ = np.nanmean(values[:, : self.columns], axis=0)
        self.lower_ = np.nanmin(values[:, : self.columns], axis=0)
        self.upper_ = np.nanmax(values[:, : self.columns], axis=0)
        self.n_features_in_ = values.shape[1]
        return self

    def transform(self, X):
        values = np.asarray(X, dtype=float)
        inputs = values[:, : self.columns]
        # Products of values beyond the training range are taken at its edge, as the splines
        # are (a model pickled before the range was kept has none to clip to).
        if getattr(self, "lower_", None) is not None:
            inputs = np.clip(inputs, self.lower_, self.upper_)
        centred = inputs - self.means_
        pairs = [
            centred[:, first] * centred[:, second]
            for first in range(self.columns)
            for second in range(first + 1, self.columns)
        ]
        return np.column_stack([values, *pairs])


def client_features(values):
    """What the model sees, from the imputed raw columns (and any missing-value indicators after).

    Logarithms for the heavy-tailed counts; the trend, last month against a twelfth of last year
    on that scale, which is what leaving follows; and dormancy (no activity last month) as a flag
    of its own, with a neutral trend, because a silent client's risk does not grow with how
    active it was before. Lives here, not in training.py, because pickled models refer to it by
    module and training.py also runs as `__main__`.
    """
    import numpy as np

    values = np.asarray(values, dtype=float)
    month, year = values[:, 0], values[:, 1]
    dormant = month == 0
    trend = np.where(dormant, 0.0, np.log1p(month) - np.log1p(year / 12))
    logs = np.log1p(values[:, :3])
    return np.column_stack([logs, trend, dormant, values[:, 3:]])
