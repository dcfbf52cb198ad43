"""Repeated rows found by row keys: the same answer as pandas, whatever the keys collide on."""

import numpy as np
import pandas as pd
import pytest

from clientrisk.data import rowkeys

COLUMNS = ["corporation", "lastmonth_activity", "exited"]


NEAR_CODES = [
    "abcd",
    "abcd\0",
    "abcdefgh",
    "abcdefghX",
    "abcdefghY",
    "abcdefghijklmnopZ",
    "abcdefghijklmnopW",
    "",
    None,
    "clientès",
    "clientés",
    "日本の顧客",
]


def awkward_rows(seed: int = 5) -> pd.DataFrame:
    """Distinct rows, and among them pairs that pandas counts as repeats (0.0 and -0.0, NaN and
    NaN, missing codes and outcomes) and codes alike up to byte 8 or 16, empty or missing,
    non-ASCII: each row of a pair can only be found by a key equal to its twin's."""
    rng = np.random.default_rng(seed)
    distinct = [f"u{number:04d}" for number in range(1000)]
    values = (0.0, -0.0, np.nan, -np.nan, 1.0, 1e300)  # -nan: the sign bit set
    codes = distinct + NEAR_CODES * len(values)
    first = [float(number) for number in range(len(distinct))]
    first += [value for value in values for _ in NEAR_CODES]
    outcomes = [0, 1, None]
    exited = list(rng.choice(outcomes, len(distinct)))
    exited += [outcomes[number % 3] for number in range(len(NEAR_CODES))] * len(values)
    frame = pd.DataFrame(
        {
            "corporation": pd.array(codes, dtype="str"),
            "lastmonth_activity": first,
            "exited": pd.array(exited, dtype="Int8"),
        }
    )
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)


@pytest.mark.parametrize("keep", ["first", "last"])
@pytest.mark.parametrize("columns", [COLUMNS, ["corporation"], ["lastmonth_activity", "exited"]])
def test_repeats_are_those_pandas_finds(keep, columns):
    frame = awkward_rows()
    ascii_codes = frame[frame["corporation"].fillna("").str.isascii()].reset_index(drop=True)
    for rows in (frame, ascii_codes):  # text keys read by arrow, or byte by byte
        found = rowkeys.duplicated(rows, columns, keep)
        assert found.dtype == bool
        assert np.array_equal(found, rows.duplicated(subset=columns, keep=keep).to_numpy())
        assert 0 < found.sum() < len(rows)


def test_codes_alike_get_different_keys():
    codes = pd.DataFrame({"corporation": pd.array(NEAR_CODES, dtype="str")})
    assert len(set(rowkeys.row_keys(codes, ["corporation"]))) == len(NEAR_CODES)
    ascii_codes = codes[codes["corporation"].fillna("").str.isascii()]
    keys = rowkeys.row_keys(ascii_codes, ["corporation"])
    assert len(set(keys)) == len(ascii_codes)


def test_rows_of_a_million_distinct_codes_have_distinct_keys():
    codes = pd.Series([f"c{number:07d}" for number in range(1_000_000)], dtype="str")
    keys = rowkeys.row_keys(pd.DataFrame({"corporation": codes}), ["corporation"])
    assert len(np.unique(keys)) == len(codes)


def test_keys_that_collide_still_give_the_exact_answer(monkeypatch):
    frame = awkward_rows()
    monkeypatch.setattr(rowkeys, "row_keys", lambda frame, columns: np.zeros(len(frame), "u8"))
    found = rowkeys.duplicated(frame, COLUMNS)
    assert np.array_equal(found, frame.duplicated(subset=COLUMNS).to_numpy())


def test_drop_duplicates_keeps_the_first_and_renumbers():
    frame = pd.DataFrame(
        {"corporation": pd.array(["a", "b", "a", "a"], dtype="str"), "exited": [0, 1, 0, 1]},
        index=[7, 8, 9, 10],
    )
    kept = rowkeys.drop_duplicates(frame, ["corporation", "exited"])
    assert kept.to_dict("list") == {"corporation": ["a", "b", "a"], "exited": [0, 1, 1]}
    assert list(kept.index) == [0, 1, 2]
    assert rowkeys.drop_duplicates(frame.iloc[:0], ["exited"]).empty
