"""Counts at the bound ingestion accepts, and beyond it: every value the model derives from them
(the fills, the trend, the splines' inputs, the reasons' ratios) stays finite, and a store that
holds a row stored before the bound was checked recovers on the next run."""

import json
import pickle

import numpy as np
import pandas as pd
import pytest

import fullprocess
import ingestion
import training
from clientrisk.calllist import reasons
from clientrisk.data import batchstore, clientcsv
from clientrisk.data.clientcsv import FEATURES, MAX_COUNT
from clientrisk.history.database import open_history
from clientrisk.model.features import ActivityImputer, SplineBasis, client_features
from conftest import HEADER, client_rows

NAN = np.nan
# Rows at the edges of what ingestion accepts (and, last, beyond: a model may be called directly).
EXTREMES = [
    [MAX_COUNT, NAN, NAN],
    [NAN, MAX_COUNT, NAN],
    [NAN, NAN, MAX_COUNT],
    [MAX_COUNT, MAX_COUNT, MAX_COUNT],
    [MAX_COUNT, 0.0, 1.0],
    [0.0, MAX_COUNT, NAN],
    [5e-324, MAX_COUNT, 1.0],
    [MAX_COUNT, 5e-324, NAN],
    [5e-324, NAN, 5e-324],
    [0.0, 0.0, 0.0],
    [NAN, NAN, NAN],
    [1.5e307, NAN, NAN],
]


def extreme_rows():
    return pd.DataFrame(EXTREMES, columns=list(FEATURES))


@pytest.fixture(scope="module")
def imputer():
    return ActivityImputer().fit(client_rows(300, seed=5)[list(FEATURES)])


def test_fills_of_extreme_counts_are_finite_and_bounded(imputer):
    with np.errstate(all="raise"):
        filled = imputer.transform(extreme_rows())
    assert np.isfinite(filled).all()
    assert (filled[:, :3] >= 0).all()
    assert (filled[:, :3] <= 12 * MAX_COUNT).all()
    # A month at the bound with no year: twelve of its months, not an overflow.
    assert filled[0, 1] == 12 * MAX_COUNT


def test_the_trend_of_extreme_counts_is_finite(imputer):
    features = client_features(imputer.transform(extreme_rows()))
    assert np.isfinite(features).all()
    trend = features[:, 3]
    assert np.abs(trend).max() <= np.log1p(12 * MAX_COUNT)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_splines_of_a_nearly_constant_column_stay_finite(dtype):
    basis = SplineBasis(columns=1, knots=5).fit(np.array([[1.0], [1.0 + 1e-15], [1.0]]))
    out = basis.transform(np.array([[-40.0], [1.0], [40.0]], dtype=dtype))
    assert np.isfinite(out).all()
    assert np.abs(out).max() < 1e3


def test_the_model_predicts_extreme_counts(deployed):
    with open(deployed.root / "models" / "trainedmodel.pkl", "rb") as handle:
        model = pickle.load(handle)
    probabilities = model.predict_proba(extreme_rows())[:, 1]
    assert np.isfinite(probabilities).all()
    assert ((probabilities >= 0) & (probabilities <= 1)).all()


def test_a_model_trains_on_counts_at_the_bound(project, capsys):
    rows = client_rows(300, seed=7)
    rows.loc[:5, "lastmonth_activity"] = MAX_COUNT
    rows.loc[:2, "lastyear_activity"] = NAN
    rows.loc[6:8, "number_of_employees"] = MAX_COUNT
    project.write_input("edges.csv", rows)
    assert ingestion.main(project.args()) == 0
    assert training.main(project.args()) == 0
    assert "Traceback" not in capsys.readouterr().err


def test_reasons_for_extreme_counts_are_finite_words():
    typical = np.array([50.0, 600.0, 20.0])
    values = extreme_rows().to_numpy()
    for changed in reasons.counterfactuals(values, typical):
        assert not np.isinf(changed).any()
    text = reasons.describe(reasons.MONTH, np.array([MAX_COUNT, 5e-324, 1.0]), typical)
    assert text.startswith("activity last month over 1,000,000% above its monthly average")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (str(MAX_COUNT), None),
        ("1000000000000001", "is too large (at most 1,000,000,000,000,000)"),
        ("1.5e307", "is too large (at most 1,000,000,000,000,000)"),
        ("1e400", "is too large"),
    ],
)
@pytest.mark.parametrize("column", FEATURES)
def test_counts_past_the_bound_are_refused_naming_the_field(column, value, reason):
    cells = {"lastmonth_activity": "1", "lastyear_activity": "20", "number_of_employees": "3"}
    cells[column] = value
    line = ",".join(["abcd", *cells.values(), "0"])
    batch = clientcsv.parse_client_csv((HEADER + line + "\n").encode(), "edge.csv")
    if reason is None:
        assert len(batch.frame) == 1
        assert not batch.rejections
    else:
        assert batch.frame.empty
        assert str(batch.rejections[0]).startswith(f"edge.csv:2: {column}: {value} {reason}")


def vast_batch() -> pd.DataFrame:
    """Good clients, and one with an outcome and one without whose month's twelve overflow."""
    good = client_rows(150, seed=31).assign(exited=lambda rows: rows["exited"].astype("Int8"))
    vast = pd.DataFrame(
        {
            "corporation": ["vst1", "vst2"],
            "lastmonth_activity": [1.5e307, 2e307],
            "lastyear_activity": [NAN, NAN],
            "number_of_employees": [3.0, 4.0],
            "exited": pd.array([1, None], dtype="Int8"),
        }
    )
    return pd.concat([good, vast], ignore_index=True)


def test_a_store_holding_an_unusable_row_recovers_on_the_next_run(deployed, monkeypatch, capsys):
    monkeypatch.setenv("RISK_API_URL", "http://127.0.0.1:9")
    deployed.write_input("vast.csv", vast_batch())
    # As an earlier version did: the rows are stored without the bound being checked.
    with monkeypatch.context() as earlier:
        earlier.setattr(clientcsv, "MAX_COUNT", float("inf"))
        assert ingestion.main(deployed.args()) == 0
    stamp_path = deployed.root / "ingesteddata" / "exports.json"
    stamp = json.loads(stamp_path.read_text())
    del stamp["max_count"]  # as an earlier version wrote it
    stamp_path.write_text(json.dumps(stamp))
    batchstore._LABELLED.clear()  # the next run is a new process: nothing read is kept
    capsys.readouterr()
    for _ in range(2):
        assert fullprocess.main(deployed.args()) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert (
        "batch 3: client vst1: lastmonth_activity: 1.5e+307 is too large"
        " (at most 1,000,000,000,000,000); row set aside" in err
    )
    assert "batch 3: client vst2: lastmonth_activity: 2e+307 is too large" in err
    ingested = deployed.root / "ingesteddata"
    set_aside = pd.read_csv(ingested / "setasiderows.csv")
    assert list(set_aside["corporation"]) == ["vst1", "vst2"]
    assert set_aside["reason"].str.startswith("lastmonth_activity: ").all()
    # Nothing else lost: every good client of the batch is compiled and judged.
    final = pd.read_csv(ingested / "finaldata.csv")
    current = pd.read_csv(ingested / "currentclients.csv")
    good = set(client_rows(150, seed=31)["corporation"])
    assert good <= set(final["corporation"])
    assert not {"vst1", "vst2"} & (set(final["corporation"]) | set(current["corporation"]))
    with open_history(deployed.config.history_path) as history:
        runs = history.latest_runs(2)
        assert runs[0].outcome == "no new data"
        assert runs[1].outcome in {"no drift", "redeployed"}
    assert training.main(deployed.args()) == 0
