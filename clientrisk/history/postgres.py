"""The history database on a PostgreSQL server (`history_db_url`): a connection that takes the
SQL `database.py` writes for sqlite3 and speaks it to PostgreSQL.

psycopg (version 3) is used directly, not SQLAlchemy: the history's SQL is hand-written, and
the few forms that differ are translated here, statement by statement (each translation is
cached), so that a method written once with `?` placeholders runs on both backends:

- `?` placeholders become `%s` (a literal `%` becomes `%%`);
- DDL: `INTEGER PRIMARY KEY` becomes an identity column (as SQLite's rowid alias numbers rows),
  `REAL` a DOUBLE PRECISION (SQLite's REAL has eight bytes, PostgreSQL's four), and a table
  without an integer key gets a `rowid` identity column, so that `ORDER BY rowid` still says
  in which order rows were written;
- `INSERT OR IGNORE` becomes `ON CONFLICT DO NOTHING`, `INSERT OR REPLACE` an upsert on the
  table's primary key that gives the row a new `rowid` and its defaults (as SQLite's delete and
  insert does); an `INSERT` into a table with an identity column returns it (`lastrowid`);
- `BEGIN IMMEDIATE` (SQLite's single writer) is a transaction that takes the history's
  transaction-level advisory lock first: writers queue for it (for `lock_timeout`, then
  HistoryBusy), readers never wait.

Every server error comes out as one line (HistoryError, or HistoryBusy for a lock held too
long), naming the URL without its password. The password is the URL's, or else
RISK_HISTORY_DATABASE_PASSWORD's; it is never shown.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
from urllib.parse import quote, quote_plus, unquote, urlsplit, urlunsplit

__all__ = [
    "PASSWORD_ENV",
    "SCHEMES",
    "WRITE_LOCK_KEY",
    "ChangeProbe",
    "ServerConnection",
    "connect",
    "is_server_url",
    "libpq_url",
    "password_of",
    "shown_url",
    "url_without_password",
]

PASSWORD_ENV = "RISK_HISTORY_DATABASE_PASSWORD"
SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")
# The advisory lock a writer of the history holds for its transaction (quiettick.py takes it
# too); locks are per database, so two histories on one server do not share it.
WRITE_LOCK_KEY = 0x7269736B68697374  # "riskhist"
CONNECT_TIMEOUT_SECONDS = 10
# SQLSTATEs: a lock not had within lock_timeout, and a server out of disk (or memory).
LOCK_NOT_AVAILABLE = "55P03"
OUT_OF_ROOM = ("53100", "53200")


def is_server_url(where) -> bool:
    """Whether `where` (a history_db_url, or a path) names a PostgreSQL database."""
    return isinstance(where, str) and where.split("://", 1)[0].lower() in SCHEMES


def libpq_url(url: str) -> str:
    """The URL as libpq reads it (`postgresql+psycopg://` is SQLAlchemy's spelling)."""
    return "postgresql://" + url.split("://", 1)[1]


def shown_url(url: str) -> str:
    """The URL with its password (if any) replaced by ***."""
    parts = urlsplit(libpq_url(url))
    if parts.password is None:
        return urlunsplit(parts)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def url_without_password(url: str) -> str:
    """The URL with no password in it at all (for a stamp that another process reads)."""
    parts = urlsplit(libpq_url(url))
    if parts.password is None:
        return urlunsplit(parts)
    user = quote(unquote(parts.username or ""), safe="")
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}@{host}" if user else host))


def password_of(url: str) -> str | None:
    """The password: the URL's, else RISK_HISTORY_DATABASE_PASSWORD's, else None."""
    password = urlsplit(libpq_url(url)).password
    if password is not None:
        return unquote(password)
    return os.environ.get(PASSWORD_ENV) or None


def scrub(text: str, password: str | None) -> str:
    """A server's message as one line, with the password hidden whatever form it took."""
    line = " ".join(str(text).strip().splitlines()[:1]) or "no message"
    if password:
        for form in {password, quote(password, safe=""), quote_plus(password)}:
            line = line.replace(form, "***")
    line = re.sub(r"(//[^/:@\s]*:)[^@/\s]*@", r"\1***@", line)
    return re.sub(r"password\s*=\s*\S+", "password=***", line, flags=re.I)


def connect(url: str, busy_timeout: float):
    """An open connection to the history database at `url`.

    Raises:
        HistoryError: psycopg is missing, or the server cannot be reached or refuses us.
    """
    from clientrisk.history.database import HistoryError

    shown, password = shown_url(url), password_of(url)
    try:
        import psycopg
    except ImportError:
        raise HistoryError(
            f"{shown}: cannot open the history database: psycopg is not installed"
            " (pip install 'psycopg[binary]')"
        ) from None
    extra = {"password": password} if password else {}
    try:
        connection = psycopg.connect(
            libpq_url(url),
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            application_name="clientrisk",
            options=f"-c lock_timeout={round(busy_timeout * 1000)}",
            **extra,
        )
    except psycopg.Error as error:
        raise HistoryError(
            f"{shown}: cannot open the history database: {scrub(error, password)}"
        ) from None
    return ServerConnection(connection, shown, password, busy_timeout)


class ServerCursor:
    """What `ServerConnection.execute` gives: rows, rowcount and lastrowid, as sqlite3's."""

    def __init__(self, rows, rowcount: int, lastrowid=None):
        self._rows = rows
        self.rowcount = rowcount
        self.lastrowid = lastrowid

    def fetchone(self):
        return self._rows.pop(0) if self._rows else None

    def fetchall(self):
        rows, self._rows = self._rows, []
        return rows

    def __iter__(self):
        return iter(self.fetchall())


class ServerConnection:
    """A psycopg connection (autocommit between transactions) that `database.py` uses as it
    uses a sqlite3 one: execute, executemany, commit, rollback, in_transaction, close."""

    def __init__(self, connection, shown: str, password: str | None, busy_timeout: float):
        self.connection = connection
        self.where = shown
        self._password = password
        self._busy_timeout = busy_timeout
        self._tables: dict[str, tuple] = {}

    # --- as sqlite3.Connection

    @property
    def in_transaction(self) -> bool:
        from psycopg.pq import TransactionStatus

        return self.connection.info.transaction_status != TransactionStatus.IDLE

    def execute(self, sql: str, parameters=()) -> ServerCursor:
        if re.fullmatch(r"\s*BEGIN\s+IMMEDIATE\s*", sql, flags=re.I):
            self._run("BEGIN", ())
            try:
                self._run("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK_KEY,))
            except BaseException:
                self.rollback()  # no transaction left open, aborted, behind a refused one
                raise
            return ServerCursor([], -1)
        statement, returning = self._translate(sql)
        cursor = self._run(statement, tuple(parameters))
        rows = cursor.fetchall() if cursor.description is not None else []
        if returning:
            return ServerCursor([], cursor.rowcount, rows[0][0] if rows else None)
        return ServerCursor(rows, cursor.rowcount)

    def executemany(self, sql: str, seq_of_parameters) -> ServerCursor:
        statement, returning = self._translate(sql)
        if returning:
            statement = statement.rpartition(" RETURNING ")[0]
        rows = [tuple(parameters) for parameters in seq_of_parameters]
        if not rows:
            return ServerCursor([], 0)
        try:
            with self.connection.cursor() as cursor:
                cursor.executemany(statement, rows)
                return ServerCursor([], cursor.rowcount)
        except Exception as error:
            raise self._error(error) from None

    def commit(self) -> None:
        self._run("COMMIT", ())

    def rollback(self) -> None:
        """Roll back the open transaction (none open, or a connection lost: nothing to do)."""
        if self.connection.closed or not self.in_transaction:
            return
        # A server gone meanwhile rolls the transaction back itself.
        with contextlib.suppress(Exception):
            self.connection.execute("ROLLBACK")

    def close(self) -> None:
        self.connection.close()

    # --- what SQLite knows its own way

    def table_exists(self, name: str) -> bool:
        # Read from pg_class as a table (the statement's snapshot): a name lookup such as
        # to_regclass may answer from this backend's cache, blind to a table another process
        # created while this one waited for the write lock.
        row = self.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relname = ? AND n.nspname = current_schema() AND c.relkind = 'r'",
            (name,),
        ).fetchone()
        return row[0] == 1

    def count_changes(self, tables) -> None:
        """Triggers that add one to `changes.generation` for every row written to `tables`."""
        self.execute(
            "CREATE OR REPLACE FUNCTION count_change() RETURNS trigger LANGUAGE plpgsql AS"
            " 'BEGIN UPDATE changes SET generation = generation + 1; RETURN NULL; END'"
        )
        for table in tables:
            for action in ("INSERT", "UPDATE", "DELETE"):
                self.execute(
                    f"CREATE TRIGGER count_{action.lower()}_{table} AFTER {action} ON {table}"
                    " FOR EACH ROW EXECUTE FUNCTION count_change()"
                )

    def integrity_problems(self) -> list[str]:
        """What the history relies on and a server could lose (its pages it checks itself)."""
        problems = []
        for table, rows in (("changes", 1), ("schema_version", 1)):
            found = self.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            if found != rows:
                problems.append(f"{table} has {found} rows, not {rows}")
        return problems

    # --- inside

    def _run(self, statement: str, parameters: tuple):
        try:
            return self.connection.execute(statement, parameters)
        except Exception as error:
            raise self._error(error) from None

    def _error(self, error: Exception) -> Exception:
        """A psycopg error as HistoryError (one line) or HistoryBusy; others as they are."""
        import psycopg

        from clientrisk.history.database import HistoryBusy, HistoryError

        if not isinstance(error, psycopg.Error):
            return error
        if error.sqlstate == LOCK_NOT_AVAILABLE:
            return HistoryBusy(
                f"{self.where}: another process has held a write lock on the history database"
                f" for {self._busy_timeout:g} s; giving up, to be retried by the next run"
            )
        what = "cannot write: " if error.sqlstate in OUT_OF_ROOM else ""
        return HistoryError(f"{self.where}: {what}{scrub(error, self._password)}")

    def _translate(self, sql: str) -> tuple[str, bool]:
        """The statement for PostgreSQL, and whether it returns the new row's id."""
        statement = placeholders(sql)
        if re.match(r"\s*(CREATE|ALTER)\s+TABLE\b", statement, flags=re.I):
            return table_ddl(statement), False
        insert = INSERT_OR.match(statement)
        if insert:
            statement = self._resolve_conflict(*insert.groups())
        into = re.match(r"\s*INSERT\s+INTO\s+(\w+)", statement, flags=re.I)
        if into and not re.search(r"\bRETURNING\b", statement, flags=re.I):
            identity = self._table(into.group(1))[1]
            if identity:
                return f"{statement} RETURNING {identity}", True
        return statement, False

    def _resolve_conflict(self, kind: str, table: str, columns: str, rest: str) -> str:
        head = f"INSERT INTO {table} ({columns}){rest}"
        if kind.upper() == "IGNORE":
            return f"{head} ON CONFLICT DO NOTHING"
        key, _, every = self._table(table)
        if not key:
            raise ValueError(f"INSERT OR REPLACE INTO {table}: the table has no primary key")
        given = {name.strip().lower() for name in columns.split(",")}
        sets = [
            f"{name} = EXCLUDED.{name}" if name in given else f"{name} = DEFAULT"
            for name in every
            if name not in key
        ]
        if not sets:
            return f"{head} ON CONFLICT ({', '.join(key)}) DO NOTHING"
        return f"{head} ON CONFLICT ({', '.join(key)}) DO UPDATE SET {', '.join(sets)}"

    def _table(self, table: str) -> tuple:
        """(primary key columns, identity column or None, every column) of a table."""
        table = table.lower()
        if table not in self._tables:
            rows = self._run(
                "SELECT a.attname, a.attidentity <> '', coalesce(a.attnum = ANY(i.indkey), false)"
                " FROM pg_attribute a LEFT JOIN pg_index i"
                " ON i.indrelid = a.attrelid AND i.indisprimary"
                " WHERE a.attrelid = (SELECT c.oid FROM pg_class c JOIN pg_namespace n"
                " ON n.oid = c.relnamespace WHERE c.relname = %s AND n.nspname = current_schema())"
                " AND a.attnum > 0 AND NOT a.attisdropped"
                " ORDER BY a.attnum",
                (table,),
            ).fetchall()
            key = tuple(name for name, _, in_key in rows if in_key)
            identity = next((name for name, is_identity, _ in rows if is_identity), None)
            self._tables[table] = (key, identity, tuple(name for name, _, _ in rows))
        return self._tables[table]


INSERT_OR = re.compile(
    r"\s*INSERT\s+OR\s+(REPLACE|IGNORE)\s+INTO\s+(\w+)\s*\(([^)]*)\)(.*)", flags=re.I | re.S
)


@functools.lru_cache(maxsize=512)
def placeholders(sql: str) -> str:
    """`?` as `%s` and `%` as `%%`, outside quoted literals."""
    parts = sql.split("'")
    for index in range(0, len(parts), 2):
        parts[index] = parts[index].replace("%", "%%").replace("?", "%s")
    return "'".join(parts)


@functools.lru_cache(maxsize=128)
def table_ddl(statement: str) -> str:
    """CREATE or ALTER TABLE in SQLite's types, in PostgreSQL's (see the module's docstring)."""
    statement = re.sub(r"\bREAL\b", "DOUBLE PRECISION", statement, flags=re.I)
    keyed = re.compile(r"\bINTEGER\s+PRIMARY\s+KEY\b", flags=re.I)
    if keyed.search(statement):
        return keyed.sub("BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY", statement)
    if re.match(r"\s*CREATE\s+TABLE\b", statement, flags=re.I):
        body, close, tail = statement.rstrip().rpartition(")")
        return f"{body}, rowid BIGINT GENERATED ALWAYS AS IDENTITY{close}{tail}"
    return statement


class ChangeProbe:
    """How far the history on a server has got, asked on one connection kept for it: what a
    cache of pages made from the history is keyed on, as a file's size and time key it on
    SQLite. One query: the change counter (everything but runs) and the newest run's row
    (which a run, or a quiet tick repeating one, updates)."""

    QUERY = (
        "SELECT c.generation, r.id, r.repeats, r.outcome, r.last_finished_at FROM changes c"
        " LEFT JOIN (SELECT id, repeats, outcome, last_finished_at FROM runs"
        " ORDER BY id DESC LIMIT 1) r ON true"
    )
    # After a failure, the same answer for this long (a server that does not answer is not
    # asked again by every request, each waiting for the connect timeout); and that time-out
    # short, since /health and /metrics ask too.
    RETRY_SECONDS = 5.0
    CONNECT_TIMEOUT_SECONDS = 2

    def __init__(self, url: str):
        import threading

        self.url = url
        self._connection = None
        self._failed = None  # (when, key) of the last failure
        self._lock = threading.Lock()

    def key(self) -> tuple:
        import time

        with self._lock:
            if self._failed and time.monotonic() - self._failed[0] < self.RETRY_SECONDS:
                return self._failed[1]
            try:
                if self._connection is None or self._connection.closed:
                    self._connection = self._connect()
                row = self._connection.execute(self.QUERY).fetchone()
                self._failed = None
                return ("history", *row) if row else ("history", None)
            except Exception as error:  # the page says why, once made again
                self.close()
                key = ("unreadable", type(error).__name__)
                self._failed = (time.monotonic(), key)
                return key

    def _connect(self):
        import psycopg

        password = password_of(self.url)
        return psycopg.connect(
            libpq_url(self.url),
            autocommit=True,
            application_name="clientrisk-api",
            connect_timeout=self.CONNECT_TIMEOUT_SECONDS,
            options="-c statement_timeout=5000",
            **({"password": password} if password else {}),
        )

    def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):  # already gone
                self._connection.close()
        self._connection = None
