"""Client rows from a request in MLflow's scoring format (`POST /invocations`), so that tools
written for MLflow's model server can call the API.

A JSON body has exactly one of `dataframe_split` ({"columns": [...], "data": [[...]]}),
`dataframe_records` (a list of objects), `instances` or `inputs` (a list of objects, a list of
rows in the order of FEATURES, or an object of columns); a `text/csv` body is a CSV with a header.
Every row is then checked as the records of `POST /prediction` are.
"""

from __future__ import annotations

import pandas as pd
from flask import request

from clientrisk.api.inputs import UnsupportedType, json_body, records_frame
from clientrisk.data.clientcsv import FEATURES, read_unlabelled_csv
from clientrisk.errors import DataError

__all__ = ["INPUT_KEYS", "invocation_rows"]

INPUT_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")
INPUT_KEYS_TEXT = ", ".join(INPUT_KEYS)


def invocation_rows() -> pd.DataFrame:
    """The client rows of a `POST /invocations` request.

    Raises:
        DataError: naming the key, the row and the field that is wrong.
        UnsupportedType: for a body neither JSON nor CSV.
    """
    if request.mimetype == "text/csv":
        return read_unlabelled_csv(request.get_data(), label="body")
    if request.mimetype != "application/json":
        raise UnsupportedType()
    body = json_body()
    if not isinstance(body, dict):
        raise DataError(f"body: expected a JSON object with one of {INPUT_KEYS_TEXT}")
    unknown = sorted(set(body) - {*INPUT_KEYS, "params"})
    if unknown:
        raise DataError(
            f"body: unknown field(s) {', '.join(map(repr, unknown))}; expected one of"
            f" {INPUT_KEYS_TEXT}"
        )
    if body.get("params"):
        raise DataError("params: this model takes no parameters")
    given = [key for key in INPUT_KEYS if key in body]
    if len(given) != 1:
        raise DataError(f"body: give exactly one of {INPUT_KEYS_TEXT}")
    key = given[0]
    return records_frame(records_of(key, body[key]), label=key)


def records_of(key: str, value) -> list:
    """The records a value under `key` stands for (left to `records_frame` to check)."""
    if key == "dataframe_split":
        return split_records(value)
    if key == "dataframe_records":
        return value
    if isinstance(value, dict):
        return column_records(key, value)
    if isinstance(value, list) and value and all(isinstance(row, list) for row in value):
        return positional_records(key, value)
    return value


def split_records(value) -> list[dict]:
    """`{"columns": [...], "data": [[...], ...]}` (pandas' split orient) as records."""
    if not isinstance(value, dict) or not isinstance(value.get("columns"), list):
        raise DataError('dataframe_split: expected {"columns": [...], "data": [[...], ...]}')
    columns, data = value["columns"], value.get("data")
    if not all(isinstance(column, str) for column in columns):
        raise DataError("dataframe_split.columns: expected a list of names")
    if not isinstance(data, list) or not data:
        raise DataError("dataframe_split.data: expected a non-empty list of rows")
    for index, row in enumerate(data):
        if not isinstance(row, list) or len(row) != len(columns):
            raise DataError(
                f"dataframe_split.data[{index}]: expected a list of {len(columns)} values,"
                " one per column"
            )
    return [dict(zip(columns, row, strict=True)) for row in data]


def positional_records(key: str, rows: list[list]) -> list[dict]:
    """Rows of values in the order of FEATURES as records."""
    for index, row in enumerate(rows):
        if len(row) != len(FEATURES):
            raise DataError(
                f"{key}[{index}]: expected {len(FEATURES)} values ({', '.join(FEATURES)}),"
                f" got {len(row)}"
            )
    return [dict(zip(FEATURES, row, strict=True)) for row in rows]


def column_records(key: str, columns: dict) -> list[dict]:
    """An object of columns (`{"name": [values], ...}`) as records."""
    if not all(isinstance(values, list) for values in columns.values()):
        raise DataError(f"{key}: expected each column as a list of values")
    lengths = {len(values) for values in columns.values()}
    if len(lengths) > 1:
        raise DataError(f"{key}: the columns have different lengths ({sorted(lengths)})")
    rows = lengths.pop() if lengths else 0
    return [{name: values[index] for name, values in columns.items()} for index in range(rows)]
