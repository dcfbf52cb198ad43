"""A database as a source of client rows, beside the input folder.

The settings name a database by SQLAlchemy URL (`input_database_url`), a table (`input_table`)
or a query (`input_query`), the column that says which rows are new (`input_new_rows_column`:
an id or a timestamp that only increases) and, in `input_columns`, the database's name of each
course column that is named otherwise. A URL without a password takes the one in
`RISK_INPUT_DATABASE_PASSWORD`; the password is never shown (`***` in every message).

Each run reads the rows whose new-rows value is above the highest one already stored (the
high-water mark), in one streamed query, in chunks (dbread.CHUNK_ROWS): each chunk is checked
as the cells of a file are, and written to the batch as it comes, so a run holds one chunk in
memory.
The rows read by one run are one batch; its batch.json records the source, the range of the
new-rows column and the row count (`database`), and the mark is read back from there: stored
with the batch in one rename, it can never say more, or less, than what was stored. A problem
(the database cannot be reached, the query fails or times out, a column is missing, the
connection is lost in the middle) is one line, and nothing of that read is stored: the next
run reads again from the same mark.

Rows inserted later with a new-rows value at or below the mark (a lower id, an earlier
timestamp) are not read: reading above a mark cannot see them without reading everything.

This module holds the source, its connection, its marks and the small query that says whether
anything is new; `dbread.py` reads the new rows into a batch.
"""

from __future__ import annotations

import datetime
import decimal
import logging
import os
import re
from collections import namedtuple

from clientrisk.errors import DataError

__all__ = [
    "META_KEY",
    "PASSWORD_ENV",
    "DatabaseSource",
    "SourceProblem",
    "connect",
    "failure",
    "from_clause",
    "mark_record",
    "mark_value",
    "new_rows_waiting",
    "newest_sql",
    "newest_value",
    "quiet_probe",
    "quoted",
    "scrub",
    "source_of",
    "stored_mark",
    "stored_read",
]

logger = logging.getLogger(__name__)

PASSWORD_ENV = "RISK_INPUT_DATABASE_PASSWORD"
# The key in batch.json that says a batch came from the database, and what it read.
META_KEY = "database"
# Words of the drivers' messages that say the database was not reached at all.
CONNECT_FAILURES = (
    "connection refused",
    "could not connect",
    "connection failed",
    "timeout expired",
    "unable to open",
    "no such host",
    "could not translate host name",
)
MARK_TYPES = {
    int: "int",
    float: "float",
    decimal.Decimal: "decimal",
    datetime.datetime: "datetime",
    datetime.date: "date",
    str: "text",
}


class SourceProblem(DataError):
    """The database could not be read this run (one line, without credentials); the next run
    tries again from the same mark."""


class DatabaseSource(
    namedtuple("DatabaseSource", "url shown table query column columns timeout password")
):
    """The database source of a config: `url` (SQLAlchemy's, with its password), `shown` (the
    URL with the password hidden), `table` or `query`, the new-rows `column`, `columns` (course
    name: database column) and `timeout` (seconds); `password` is only for scrubbing messages."""

    __slots__ = ()

    @property
    def label(self) -> str:
        """How batches, logs and the record name the source (never with the password)."""
        what = f"table {self.table}" if self.table else "input_query"
        return f"database {self.shown} {what}"

    @property
    def identity(self) -> str:
        """What the mark belongs to: another table, query or new-rows column starts afresh."""
        return f"{self.label} by {self.column}" + (f": {self.query}" if self.query else "")


def source_of(settings: dict, base_dir=None) -> DatabaseSource | None:
    """The database source the settings name, or None. A relative SQLite path is taken from
    `base_dir` (the config file's folder); `postgresql://` means psycopg (version 3).

    Raises:
        SourceProblem: the URL is not one SQLAlchemy reads (shown without its password).
    """
    text = settings.get("input_database_url")
    if not text:
        return None
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(text)
    except ArgumentError:
        raise SourceProblem(
            f"input_database_url is not an SQLAlchemy URL: {_hide_in_text(text)}"
        ) from None
    backend = url.get_backend_name()
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    if backend == "sqlite" and url.database and url.database != ":memory:" and base_dir:
        url = url.set(database=os.path.join(base_dir, os.path.expanduser(url.database)))
    if url.password is None and os.environ.get(PASSWORD_ENV) and backend != "sqlite":
        url = url.set(password=os.environ[PASSWORD_ENV])
    return DatabaseSource(
        url=url,
        shown=url.render_as_string(hide_password=True),
        table=settings.get("input_table"),
        query=(settings.get("input_query") or "").strip().rstrip(";").strip() or None,
        column=settings["input_new_rows_column"],
        columns=dict(settings.get("input_columns") or {}),
        timeout=float(settings.get("input_query_timeout_seconds", 60.0)),
        password=url.password,
    )


def _hide_in_text(text: str) -> str:
    """A URL text with whatever stands between `user:` and `@` replaced by ***."""
    return re.sub(r"(//[^/:@]*:)[^@/]*@", r"\1***@", text)


def scrub(source: DatabaseSource, text: str) -> str:
    """A driver's message as one line, with the password and whatever URL it holds hidden."""
    line = " ".join(str(text).strip().splitlines()[:1]) or "no message"
    line = _hide_in_text(line)
    if source.password:
        from urllib.parse import quote, quote_plus

        secret = str(source.password)
        for form in {secret, quote(secret), quote_plus(secret)}:
            if form:
                line = line.replace(form, "***")
    line = re.sub(r"password\s*=\s*\S+", "password=***", line, flags=re.I)
    return line


def problem(source: DatabaseSource, doing: str, error: BaseException) -> SourceProblem:
    """One line for a failed database operation: the driver's own first line, scrubbed."""
    original = getattr(error, "orig", None) or error
    return SourceProblem(f"{source.label}: {doing}: {scrub(source, original)}")


# --- connecting ----------------------------------------------------------------------------------


def connect(source: DatabaseSource):
    """An SQLAlchemy engine for the source, with its time-outs and no pool (one connection per
    run). A SQLite URL must name an existing file (it is never created).

    Raises:
        SourceProblem: the SQLite file does not exist.
    """
    from sqlalchemy import create_engine, event
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.pool import NullPool

    backend = source.url.get_backend_name()
    args = {}
    if backend == "sqlite":
        database = source.url.database or ""
        if database in ("", ":memory:") or not os.path.isfile(database):
            raise SourceProblem(f"{source.label}: cannot reach the database: no file {database!r}")
        args["timeout"] = source.timeout  # the busy time-out
    elif backend == "postgresql":
        args["connect_timeout"] = max(1, round(source.timeout))
        args["options"] = f"-c statement_timeout={round(source.timeout * 1000)}"
    try:
        engine = create_engine(source.url, poolclass=NullPool, connect_args=args)
    except (SQLAlchemyError, ImportError) as error:  # a dialect or driver not installed
        raise problem(source, "cannot use this database", error) from None
    if backend == "sqlite":
        event.listen(engine, "connect", _sqlite_deadline(source.timeout))
    return engine


def _sqlite_deadline(seconds: float):
    """A connect hook that makes SQLite give up a statement that works longer than `seconds`
    without returning rows (SQLite has no statement time-out of its own: a progress handler,
    called every 10,000 steps, interrupts it). A pause between calls is time spent outside
    SQLite (the rows of one fetch being checked): the clock starts again after one."""
    import time

    def on_connect(dbapi_connection, _record) -> None:
        clock = {"started": time.monotonic(), "last": time.monotonic()}

        def over() -> int:
            now = time.monotonic()
            if now - clock["last"] > 0.1:
                clock["started"] = now
            clock["last"] = now
            return int(now - clock["started"] > seconds)

        dbapi_connection.set_progress_handler(over, 10_000)

    return on_connect


def quoted(engine, name: str) -> str:
    """A table or column name quoted for the database (a table may be `schema.table`)."""
    preparer = engine.dialect.identifier_preparer
    return ".".join(preparer.quote(part) for part in name.split("."))


def from_clause(engine, source: DatabaseSource, bound: bool = True) -> str:
    """What rows come from: the quoted table, or the query as a subquery. `bound`: for
    SQLAlchemy's text(), whose `:name` are parameters, so the query's own colons (a `::` cast,
    a literal) are escaped; without it, the SQL as the driver itself runs it."""
    if source.table:
        return quoted(engine, source.table)
    query = source.query.replace(":", "\\:") if bound else source.query
    return f"({query}) AS source_rows"


def newest_sql(engine, source: DatabaseSource, as_text: bool = False, bound: bool = True) -> str:
    """The one small query that says whether there is anything new: the highest new-rows value
    (with an index on the column, one index look-up); `as_text`, as the database's text;
    `bound` as from_clause's."""
    newest = f"max({quoted(engine, source.column)})"
    newest = f"CAST({newest} AS TEXT)" if as_text else newest
    return f"SELECT {newest} FROM {from_clause(engine, source, bound)}"


def newest_value(source: DatabaseSource):
    """The highest new-rows value in the source now (None for no rows).

    Raises:
        SourceProblem: the database cannot be reached or the query fails.
    """
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    engine = connect(source)
    try:
        with engine.connect() as connection:
            return connection.execute(text(newest_sql(engine, source))).scalar()
    except SQLAlchemyError as error:
        raise failure(source, engine, error, "cannot read the newest row") from None
    finally:
        engine.dispose()


def failure(source, engine, error, doing: str) -> SourceProblem:
    """One line for a failed read: the connection lost, the database not reached, or else."""
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    if isinstance(error, OperationalError | InterfaceError) and getattr(
        error, "connection_invalidated", False
    ):
        doing = f"lost the connection while {doing}"
    elif isinstance(error, DBAPIError) and _is_connect_error(error):
        doing = "cannot reach the database"
    return problem(source, doing, error)


def _is_connect_error(error) -> bool:
    text = str(getattr(error, "orig", error)).lower()
    return any(
        word in text
        for word in (
            "connection refused",
            "could not connect",
            "connection failed",
            "timeout expired",
            "unable to open",
        )
    )


# --- the high-water mark -------------------------------------------------------------------------


def mark_record(value) -> dict:
    """A new-rows value as batch.json keeps it: its type and its exact text."""
    kind = MARK_TYPES.get(type(value))
    if kind is None and isinstance(value, datetime.datetime):
        kind = "datetime"
    if kind is None:
        raise SourceProblem(
            f"the new-rows column holds {type(value).__name__} values; use an increasing id"
            " or a timestamp"
        )
    text = value.isoformat() if kind in ("datetime", "date") else str(value)
    return {"type": kind, "value": text}


def mark_value(record: dict):
    """The new-rows value a batch.json record holds (as `mark_record` wrote it)."""
    kind, text = record["type"], record["value"]
    if kind == "int":
        return int(text)
    if kind == "float":
        return float(text)
    if kind == "decimal":
        return decimal.Decimal(text)
    if kind == "datetime":
        return datetime.datetime.fromisoformat(text)
    if kind == "date":
        return datetime.date.fromisoformat(text)
    return text


def stored_read(ingested_dir, history, source: DatabaseSource) -> dict | None:
    """What the newest batch of this source read (its batch.json's `database`), or None."""
    from clientrisk.data import batchstore

    for batch in reversed(history.batches()):
        if batch.source != source.label:
            continue
        folder = batchstore.batches_dir(ingested_dir) / batch.folder
        read = batchstore.read_batch_meta(folder).get(META_KEY) or {}
        if read.get("identity") == source.identity:
            return read
    return None


def stored_mark(ingested_dir, history, source: DatabaseSource):
    """The highest new-rows value stored from this source (None: nothing yet), from the
    batch.json of its newest batch."""
    read = stored_read(ingested_dir, history, source)
    return None if read is None else mark_value(read["last"])


def is_newer(value, mark) -> bool:
    """Whether the source's newest value is above the stored mark."""
    if value is None:
        return False
    if mark is None:
        return True
    try:
        return value > mark
    except TypeError:  # the column changed type: the read says what it finds
        return True


# --- is anything new? --------------------------------------------------------------------------


def new_rows_waiting(config, history, probe: dict | None = None) -> str | None:
    """Whether the config's database has rows above the stored mark: what to say of them, or
    None. One small query (`newest_sql`); `probe`, if given, gets the source and its newest
    value (for the quiet tick's stamp).

    Raises:
        SourceProblem: the database cannot be reached or the query fails.
    """
    source = source_of(config.settings, config.path.parent)
    newest = newest_value(source)
    mark = stored_mark(config.ingested_dir, history, source)
    if probe is not None:
        probe.update(source=source, newest=newest)
    if not is_newer(newest, mark):
        return None
    above = "" if mark is None else f" above {mark}"
    return f"{source.label}: rows with {source.column}{above} (up to {newest})"


def quiet_probe(source: DatabaseSource, newest, config_url: str) -> dict | None:
    """What the quiet tick needs to ask the newest value again without SQLAlchemy, and the
    answer it should get: never the password, only where it comes from. None for a database
    the quiet tick cannot ask (every tick then decides in full).

    SQLite is asked with sqlite3. PostgreSQL is asked over its wire protocol with the standard
    library (pipeline/pgwire.py), for the value as the server's text: that query is asked here
    once, and then the newest value again, so that the stamp holds what this decision saw (a row
    that arrived meanwhile leaves no stamp). Parameters pgwire does not speak mean psycopg.
    """
    from sqlalchemy.engine import make_url

    engine = connect(source)
    try:
        backend = source.url.get_backend_name()
        fields = {
            "db_backend": backend,
            "db_sql": newest_sql(engine, source, bound=False),
            "db_newest": repr(newest),
            "db_timeout": source.timeout,
            "db_password": "config"
            if make_url(config_url).password is not None
            else ("env" if source.password else "none"),
        }
        if backend == "sqlite":
            return {**fields, "db_connect": source.url.database}
        if backend != "postgresql" or source.url.get_driver_name() != "psycopg":
            return None
        wire = _wire_probe(source, engine, newest)
        if wire is not None:
            return {**fields, **wire}
        return {**fields, "db_backend": "psycopg", "db_connect": _conninfo(source, engine)}
    finally:
        engine.dispose()


def _wire_probe(source: DatabaseSource, engine, newest) -> dict | None:
    """The stamp's fields for asking PostgreSQL over pgwire, checked by asking once."""
    import json

    from clientrisk.pipeline import pgwire

    url = source.url
    if set(url.query) - {"host", "sslmode"}:
        return None
    params = {
        "host": url.query.get("host") or url.host,
        "port": url.port,
        "dbname": url.database,
        "user": url.username,
        "sslmode": url.query.get("sslmode"),
    }
    params = {key: value for key, value in params.items() if value}
    sql = newest_sql(engine, source, as_text=True, bound=False)
    try:
        text = pgwire.first_cell(params, source.password, sql, source.timeout)
    except pgwire.ProbeError as error:
        logger.debug("%s: the quiet tick will ask with psycopg: %s", source.label, error)
        return None
    if newest_value(source) != newest:
        return None  # a row arrived since the decision: no stamp this time
    return {
        "db_backend": "postgresql",
        "db_connect": json.dumps(params),
        "db_sql": sql,
        "db_newest": repr(text),
    }


def _conninfo(source: DatabaseSource, engine) -> str:
    """libpq's connection string for the source, without the password (for psycopg)."""
    from psycopg.conninfo import make_conninfo

    _, params = engine.dialect.create_connect_args(source.url.set(password=None))
    # Only libpq's own parameters (the dialect adds objects of psycopg's, a `context`).
    plain = {
        key: str(value)
        for key, value in params.items()
        if key != "password" and isinstance(value, str | int)
    }
    return make_conninfo(**plain)
