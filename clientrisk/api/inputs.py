"""The client rows a request asks about, each field checked: JSON records, a CSV body, or the path
of a CSV file inside the configured data folders (as a JSON field, a form field or in the query
string, under any of the names clients written for the course give it).
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
from flask import Request, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.utils import cached_property

from clientrisk.api.state import state
from clientrisk.data.clientcsv import (
    FEATURES,
    ID_COLUMN,
    MAX_COUNT,
    MAX_COUNT_TEXT,
    read_unlabelled_csv,
)
from clientrisk.errors import DataError

logger = logging.getLogger(__name__)

# The names under which clients send the path of a data file: `filepath`, and those the public
# course clients use.
FILE_FIELDS = (
    "filepath", "data_file", "data_path", "datafile", "dataset_path", "data_file_path",
    "filelocation", "filename", "file_path",
)  # fmt: skip
FILE_FIELDS_TEXT = ", ".join(FILE_FIELDS)
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
# Longest path a client may name; longer ones cannot name a file on common file systems.
MAX_PATH_LENGTH = 4096
MAX_NAME_LENGTH = 255
READ_CHUNK_BYTES = 1 << 16


class BoundedRequest(Request):
    """A request whose body, however it is framed, is refused with 413 when it is over the limit.

    werkzeug stops reading a body sent without a Content-Length (chunked) at the limit and hands
    on what it read as if it were all; here such a body is read to one byte past the limit, so
    that a body over it is refused rather than cut.
    """

    @cached_property
    def stream(self):
        limit = self.max_content_length
        unframed = self.content_length is None and "wsgi.input_terminated" in self.environ
        if not unframed or limit is None:
            return super().stream
        source = self.environ["wsgi.input"]
        body = bytearray()
        while len(body) <= limit:
            part = source.read(min(READ_CHUNK_BYTES, limit + 1 - len(body)))
            if not part:
                break
            body += part
        if len(body) > limit:
            raise RequestEntityTooLarge()
        return io.BytesIO(bytes(body))


class Forbidden(HTTPException):
    code = 403

    def __init__(self, field: str = "filepath"):
        super().__init__(f"{field}: only files inside the configured data folders can be read")


class NotFoundInData(HTTPException):
    code = 404

    def __init__(self, field: str = "filepath"):
        super().__init__(f"{field}: no such file in the data folders")


class UnsupportedType(HTTPException):
    code = 415
    description = "send application/json or text/csv"


def records_frame(records, label: str = "records") -> pd.DataFrame:
    """Client rows from JSON records, each checked field by field.

    Args:
        records: a list of objects, one a client.
        label: what the request calls them, to name them in messages.

    Raises:
        DataError: naming the record and the field, e.g. `records[2].lastyear_activity: ...`.
    """
    if not isinstance(records, list) or not records:
        raise DataError(f"{label}: expected a non-empty list of objects")
    values = np.empty((len(records), len(FEATURES)))
    ids = []
    for index, record in enumerate(records):
        where = f"{label}[{index}]"
        if not isinstance(record, dict):
            raise DataError(f"{where}: expected an object with {', '.join(FEATURES)}")
        for column, name in enumerate(FEATURES):
            if name not in record:
                raise DataError(f"{where}: missing field '{name}'")
            values[index, column] = _feature_value(record[name], f"{where}.{name}")
        identifier = record.get(ID_COLUMN)
        if identifier is not None and not isinstance(identifier, str):
            raise DataError(f"{where}.{ID_COLUMN}: expected text, got {_brief(identifier)}")
        if identifier is not None and not _is_unicode_text(identifier):
            raise DataError(
                f"{where}.{ID_COLUMN}: not valid text (a lone UTF-16 surrogate such as \\ud800)"
            )
        ids.append(identifier)
    frame = pd.DataFrame(values, columns=list(FEATURES))
    if any(identifier is not None for identifier in ids):
        frame.insert(0, ID_COLUMN, ids)
    return frame


def _is_unicode_text(text: str) -> bool:
    """Whether `text` can be written as UTF-8 (JSON lets a lone surrogate through)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _feature_value(value, where: str) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DataError(f"{where}: expected a number or null, got {_brief(value)}")
    try:
        number = float(value)
    except OverflowError:
        raise DataError(f"{where}: {_brief(value)} is too large") from None
    if not math.isfinite(number):
        raise DataError(f"{where}: {value} is not finite")
    if number < 0:
        raise DataError(f"{where}: {_brief(value)} is negative")
    if number > MAX_COUNT:
        raise DataError(f"{where}: {_brief(value)} is too large (at most {MAX_COUNT_TEXT})")
    return number


def _brief(value) -> str:
    """A JSON value for an error message, shortened: never the whole of a huge one."""
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, int) and not isinstance(value, bool) and len(str(value)) > 30:
        return f"{str(value)[:20]}… ({len(str(value)):,} digits)"
    return json.dumps(value)[:60]


def data_file(text, field: str = "filepath") -> Path:
    """The CSV file a `filepath` (or another of FILE_FIELDS, named `field`) names, if it lies
    inside the configured data folders.

    The path is relative to the project folder (the config file's). A path outside the data
    folders, such as one in the layout of another machine (`/their/project/testdata/testdata.csv`),
    is read as the project's own file when a tail of it (`testdata/testdata.csv`) names one in
    the data folders, else when exactly one file of its name lies directly in a data folder.
    Anything else, `..` and links that lead out included, is refused without asking the file
    system about it, so the answer never tells whether a file outside exists.
    """
    config = state().config
    if not isinstance(text, str) or not text.strip() or "\x00" in text:
        raise DataError(f"{field}: expected the path of a CSV file in a data folder")
    if len(text) > MAX_PATH_LENGTH or any(len(part) > MAX_NAME_LENGTH for part in text.split("/")):
        raise DataError(f"{field}: too long to name a file")
    try:
        roots = data_roots(config)
        candidate = Path(os.path.realpath(config.path.parent / text))
        if not _inside(candidate, roots):
            candidate = _project_file_for(text, config.path.parent, roots, field)
            logger.info("%s %s read as %s", field, text, candidate)
        if candidate.suffix.lower() != ".csv":
            raise DataError(f"{field}: only .csv files can be read")
        if not candidate.is_file():
            raise NotFoundInData(field)
    except OSError as error:
        raise DataError(f"{field}: cannot be used: {error.strerror or error}") from None
    return candidate


def data_roots(config) -> list[Path]:
    """The folders a client may read a file from, as real paths."""
    test_root = config.test_data_path if config.test_data_path.is_dir() else None
    roots = [config.input_dir, config.ingested_dir, test_root or config.test_data_file.parent]
    return [Path(os.path.realpath(root)) for root in roots]


def _inside(path: Path, roots: list[Path]) -> bool:
    return any(path.is_relative_to(root) for root in roots)


def _project_file_for(text: str, project: Path, roots: list[Path], field: str) -> Path:
    """The data file a path outside the data folders stands for: the longest tail of it that
    names a file in them, else the one file of its name directly in a data folder.

    Raises:
        Forbidden: when neither finds a file (nothing outside the project is looked at).
        DataError: when several data folders hold a file of that name.
    """
    parts = [part for part in PurePosixPath(text.replace("\\", "/")).parts if part != "/"]
    for start in range(1, len(parts) - 1):
        tail = parts[start:]
        if ".." in tail:
            continue
        candidate = Path(os.path.realpath(project.joinpath(*tail)))
        if _inside(candidate, roots) and candidate.is_file():
            return candidate
    name = parts[-1] if parts else ""
    if not name.lower().endswith(".csv") or name in {".", ".."}:
        raise Forbidden(field)
    matches = sorted(
        {
            Path(os.path.realpath(root / name))
            for root in roots
            if _inside(Path(os.path.realpath(root / name)), roots) and (root / name).is_file()
        }
    )
    if not matches:
        raise Forbidden(field)
    if len(matches) > 1:
        found = ", ".join(os.path.relpath(path, os.path.realpath(project)) for path in matches)
        raise DataError(
            f"{field}: {len(matches)} files named {name!r} in the data folders ({found});"
            " give the path relative to the project folder"
        )
    return matches[0]


def json_body():
    """The request's JSON, or DataError saying what is wrong with it."""
    try:
        return json.loads(request.get_data())
    except RecursionError:
        raise DataError("body: JSON nested too deeply") from None
    except ValueError as error:
        raise DataError(f"body: invalid JSON: {error}") from None


def rows_of_file(filepath, field: str = "filepath") -> pd.DataFrame:
    path = data_file(filepath, field)
    return read_unlabelled_csv(path, label=filepath)


def wants_reasons(body) -> bool:
    """Whether to explain each prediction: `reasons` (true unless false) in a JSON body or the
    query string; bulk scoring can leave the reasons out."""
    given = request.args.get("reasons")
    if isinstance(body, dict) and "reasons" in body:
        if given is not None:
            raise DataError("give reasons either in the query string or in the body, not both")
        if not isinstance(body["reasons"], bool):
            raise DataError(f"reasons: expected true or false, got {_brief(body['reasons'])}")
        return body["reasons"]
    if given is None:
        return True
    if given.lower() not in {"true", "false", "1", "0"}:
        raise DataError(f"reasons: expected true or false, got {_brief(given)}")
    return given.lower() in {"true", "1"}


def prediction_rows() -> tuple[pd.DataFrame, bool]:
    """The client rows a request asks about: JSON records or a file path, a CSV body, or a file
    path as a form field or in the query string (under any of FILE_FIELDS, as clients written
    for the course send it); and whether to give the reasons."""
    unknown = sorted(set(request.args) - {*FILE_FIELDS, "reasons"})
    if unknown:
        raise DataError(
            f"query: unknown parameter(s) {', '.join(map(repr, unknown))}; the file's path goes"
            f" in one of {FILE_FIELDS_TEXT}, and reasons=false leaves the reasons out"
        )
    rows, body = _prediction_rows()
    return rows, wants_reasons(body)


def file_field(fields, where: str) -> str | None:
    """The one file field among `fields` (names given in a body, a form or a query string)."""
    given = [name for name in FILE_FIELDS if name in fields]
    if len(given) > 1:
        raise DataError(f"{where}: give the file in one field, not {', '.join(given)}")
    return given[0] if given else None


def _prediction_rows():
    query_field = file_field(request.args, "query")
    if not request.get_data():
        if query_field is None:
            raise DataError(
                'body: send {"records": [...]} or {"filepath": "..."} as JSON, a CSV body, or'
                " a filepath form field or query parameter (the path may also be given as"
                f" one of {FILE_FIELDS_TEXT})"
            )
        return rows_of_file(request.args[query_field], query_field), None
    if query_field is not None:
        raise DataError(
            f"give the {query_field} either in the query string or in the body, not both"
        )
    if request.mimetype == "text/csv":
        return read_unlabelled_csv(request.get_data(), label="body"), None
    if request.mimetype in FORM_TYPES:
        fields = set(request.form) | set(request.files)
        field = file_field(fields, "form")
        if field is None or fields != {field} or request.files:
            raise DataError(f"form: expected exactly one field, 'filepath' (or {FILE_FIELDS_TEXT})")
        return rows_of_file(request.form[field], field), None
    if request.mimetype != "application/json":
        raise UnsupportedType()
    body = json_body()
    if not isinstance(body, dict):
        raise DataError('body: expected a JSON object {"records": [...]} or {"filepath": "..."}')
    unknown = sorted(set(body) - {"records", "reasons", *FILE_FIELDS})
    if unknown:
        raise DataError(
            f"body: unknown field(s) {', '.join(map(repr, unknown))}; expected 'records' or the"
            f" file's path in one of {FILE_FIELDS_TEXT}, and optionally 'reasons'"
        )
    field = file_field(body, "body")
    if ("records" in body) == (field is not None):
        raise DataError(
            "body: give exactly one of 'records' and 'filepath' (or another name for the path:"
            f" {FILE_FIELDS_TEXT})"
        )
    if "records" in body:
        return records_frame(body["records"]), body
    return rows_of_file(body[field], field), body
