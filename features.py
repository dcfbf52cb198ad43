"""The model's first step: gaps in the raw columns filled without inventing a trend.

A median in place of a missing count breaks the ratio the model lives on: a client with 9 actions
last year and no figure for last month would get the median month (about 50) and a trend of +3.3,
far outside anything seen, and the splines extrapolate it into a near-certain exit. So a missing
last month is taken as an average month of the client's own year, a missing year as twelve such
months (or the median for a silent client: no activity last month says nothing of the year), and
only what is still missing gets the training data's median. Every column's gap stays visible to
the model as an indicator.

Lives in its own module because pickled models refer to it by module, and importing scikit-learn
here keeps it out of what a quiet cron tick imports.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

MONTH, YEAR = 0, 1


class ActivityImputer(TransformerMixin, BaseEstimator):
    """Fill last month from last year and back; the medians (`statistics_`) for the rest.

    Transforms the raw columns (last month, last year, employees) into the filled columns
    followed by one missing-value indicator per column.
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
        return self

    def transform(self, X):
        values = _floats(X)
        missing = np.isnan(values)
        month, year = values[:, MONTH], values[:, YEAR]
        month_only = ~missing[:, MONTH] & missing[:, YEAR] & (month > 0)
        year_only = missing[:, MONTH] & ~missing[:, YEAR]
        year[month_only] = month[month_only] * 12
        month[year_only] = year[year_only] / 12
        still = np.isnan(values)
        values[still] = np.broadcast_to(self.statistics_, values.shape)[still]
        return np.hstack([values, missing.astype(float)])


def _floats(X) -> np.ndarray:
    """A float copy of the rows, pandas' missing values (NA, None) as NaN."""
    if hasattr(X, "to_numpy"):
        return X.to_numpy(dtype=float, na_value=np.nan, copy=True)
    return np.array(X, dtype=float)
