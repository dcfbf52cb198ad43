"""The shipped CSVs are exactly what the seeded generator makes, and look like client data."""

import pandas as pd
import pytest

import generate_data
from clientrisk.config import PROJECT_DIR
from clientrisk.data.clientcsv import COLUMNS, FEATURES, read_client_csv

SHIPPED = {
    name: PROJECT_DIR / folder / name for name, (folder, _) in generate_data.SHIPPED_FILES.items()
}


def test_generator_reproduces_the_shipped_files(tmp_path):
    assert generate_data.main(["--root", str(tmp_path)]) == 0
    for name, path in SHIPPED.items():
        folder = generate_data.SHIPPED_FILES[name][0]
        assert (tmp_path / folder / name).read_bytes() == path.read_bytes(), name
    roster = tmp_path.joinpath(*generate_data.ROSTER)
    assert roster.read_bytes() == PROJECT_DIR.joinpath(*generate_data.ROSTER).read_bytes()


def test_the_roster_lists_the_clients_still_with_us(source):
    roster = pd.read_csv(PROJECT_DIR.joinpath(*generate_data.ROSTER))
    assert list(roster.columns) == list(COLUMNS[:-1])  # no outcome: current clients
    assert roster["corporation"].is_unique
    stayed = set(source.loc[source["exited"] == 0, "corporation"])
    left = set(source.loc[source["exited"] == 1, "corporation"])
    listed = set(roster["corporation"])
    assert stayed <= listed
    assert not listed & left
    assert len(listed - stayed) == generate_data.ROSTER_NEWCOMERS


@pytest.fixture(scope="module")
def source():
    frames = [pd.read_csv(SHIPPED[name]) for name in ("dataset3.csv", "dataset4.csv")]
    return pd.concat(frames, ignore_index=True)


def test_course_columns_and_no_invalid_rows():
    for path in SHIPPED.values():
        batch = read_client_csv(path)
        assert list(batch.frame.columns) == list(COLUMNS)
        assert batch.rejections == []


def test_ten_thousand_distinct_clients(source):
    assert source["corporation"].nunique() == 10_000
    assert source["corporation"].str.fullmatch("[a-z]{4}").all()


def test_test_set_is_a_separate_holdout(source):
    test = pd.read_csv(SHIPPED["testdata.csv"])
    assert len(test) >= 1000
    assert not set(test["corporation"]) & set(source["corporation"])


def test_realistic_shape(source):
    assert 0.15 <= source["exited"].mean() <= 0.30
    missing = source[list(FEATURES)].isna().mean()
    assert ((missing > 0.01) & (missing < 0.06)).all()
    for name in FEATURES:
        values = source[name].dropna()
        assert values.max() > 50 * values.median(), f"{name} is not heavy-tailed"


def test_drifted_batch_differs(tmp_path):
    path = tmp_path / "drifted.csv"
    generate_data.main(["--root", str(tmp_path), "--drifted", str(path), "--rows", "500"])
    drifted = pd.read_csv(path)
    usual = pd.read_csv(SHIPPED["dataset3.csv"])
    assert len(drifted) == 500
    assert not set(drifted["corporation"]) & set(usual["corporation"])
    assert drifted["lastyear_activity"].median() < 0.8 * usual["lastyear_activity"].median()
