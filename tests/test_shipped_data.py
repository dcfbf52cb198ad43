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
    assert generate_data.main(["--shipped", "--root", str(tmp_path)]) == 0
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
    assert (
        generate_data.main(["--root", str(tmp_path), "--drifted", str(path), "--rows", "500"]) == 0
    )
    assert [item.name for item in tmp_path.iterdir()] == ["drifted.csv"]  # nothing shipped
    drifted = pd.read_csv(path)
    usual = pd.read_csv(SHIPPED["dataset3.csv"])
    assert len(drifted) == 500
    assert not set(drifted["corporation"]) & set(usual["corporation"])
    assert drifted["lastyear_activity"].median() < 0.8 * usual["lastyear_activity"].median()


def test_nothing_is_written_unless_asked(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        generate_data.main(["--root", str(tmp_path)])
    assert stopped.value.code == 2
    assert "nothing to write: give --shipped, --batch PATH or --drifted PATH" in (
        capsys.readouterr().err
    )
    assert list(tmp_path.iterdir()) == []


def test_an_ordinary_batch_is_of_the_shipped_market_and_of_new_clients(tmp_path):
    batch, drifted = tmp_path / "batch.csv", tmp_path / "drifted.csv"
    argv = ["--batch", str(batch), "--drifted", str(drifted), "--rows", "3000"]
    assert generate_data.main(argv) == 0
    rows = pd.read_csv(batch)
    usual = pd.read_csv(SHIPPED["dataset3.csv"])
    assert list(rows.columns) == list(COLUMNS)
    assert len(rows) == 3000
    shipped = set().union(*(pd.read_csv(path)["corporation"] for path in SHIPPED.values()))
    codes = set(rows["corporation"])
    assert len(codes) == 3000
    assert not codes & shipped
    assert not codes & set(pd.read_csv(drifted)["corporation"])
    ratio = rows["lastyear_activity"].median() / usual["lastyear_activity"].median()
    assert 0.85 < ratio < 1.15
    assert abs(rows["exited"].mean() - usual["exited"].mean()) < 0.03


def test_a_batch_too_large_for_four_letter_codes_gets_five(tmp_path):
    path = tmp_path / "drifted.csv"
    rows = generate_data.MAX_ROWS_FOUR_LETTERS + 1
    assert rows == 444_477
    assert generate_data.main(["--drifted", str(path), "--rows", str(rows)]) == 0
    codes = pd.read_csv(path, usecols=["corporation"])["corporation"]
    assert len(codes) == rows
    assert codes.is_unique
    assert (codes.str.len() == 5).all()


@pytest.mark.parametrize("rows", ["0", str(26**5 + 1)])
def test_an_impossible_row_count_is_refused_without_a_traceback(tmp_path, rows, capsys):
    with pytest.raises(SystemExit) as stopped:
        generate_data.main(["--batch", str(tmp_path / "batch.csv"), "--rows", rows])
    assert stopped.value.code == 2
    assert "--rows" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
