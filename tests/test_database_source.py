"""A database as a source of client rows beside the input folder, against SQLite and a real
PostgreSQL server of the tests' own (tests/dbservers.py): new rows between runs, late rows,
bad rows, other column names, an unreachable database, a time-out, a changed table, the
connection lost in the middle of a read, a kill -9 while a batch is stored, passwords."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
from types import SimpleNamespace

import pandas as pd
import pytest

from clientrisk.config import PROJECT_DIR
from clientrisk.data import batchstore, dbread, dbsource, ingest
from clientrisk.errors import ConfigError
from clientrisk.history.database import open_history
from conftest import client_rows

CREATE = (
    "CREATE TABLE {table} (id INTEGER PRIMARY KEY, {corporation} TEXT,"
    " lastmonth_activity DOUBLE PRECISION, lastyear_activity DOUBLE PRECISION,"
    " number_of_employees INTEGER, exited INTEGER, added_at {timestamp})"
)


class SourceDatabase:
    """A database of client rows, of one backend, and how a config names it."""

    def __init__(self, backend: str, url: str, server=None):
        self.backend = backend
        self.url = url
        self.server = server
        from sqlalchemy import create_engine
        from sqlalchemy.pool import NullPool

        self.engine = create_engine(url, poolclass=NullPool)

    def execute(self, sql: str, rows=None) -> None:
        from sqlalchemy import text

        with self.engine.begin() as connection:
            connection.execute(text(sql), rows or {})

    def scalar(self, sql: str):
        from sqlalchemy import text

        with self.engine.connect() as connection:
            return connection.execute(text(sql)).scalar()

    def create_clients(self, table: str = "clients", corporation: str = "corporation") -> None:
        timestamp = "TIMESTAMP WITH TIME ZONE" if self.backend == "postgresql" else "TEXT"
        self.execute(CREATE.format(table=table, corporation=corporation, timestamp=timestamp))

    def insert(self, frame: pd.DataFrame, first_id: int, table="clients", corporation=None):
        """Insert client rows with ids from `first_id` (and a time a minute apart per id)."""
        corporation = corporation or "corporation"
        rows = [
            {
                "id": first_id + number,
                "corporation": row["corporation"],
                "lastmonth_activity": row["lastmonth_activity"],
                "lastyear_activity": row["lastyear_activity"],
                "number_of_employees": row["number_of_employees"],
                "exited": None if pd.isna(row.get("exited")) else int(row["exited"]),
                "added_at": added_at(first_id + number),
            }
            for number, row in enumerate(frame.to_dict("records"))
        ]
        self.execute(
            f"INSERT INTO {table} (id, {corporation}, lastmonth_activity, lastyear_activity,"
            " number_of_employees, exited, added_at) VALUES (:id, :corporation,"
            " :lastmonth_activity, :lastyear_activity, :number_of_employees, :exited, :added_at)",
            rows,
        )

    def dispose(self) -> None:
        self.engine.dispose()


def added_at(number: int) -> str:
    minutes = number % 60
    hours = number // 60
    return f"2026-01-{1 + hours // 24:02d} {hours % 24:02d}:{minutes:02d}:00+00:00"


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path):
    """An empty database of each backend (PostgreSQL: a new database on the session's server)."""
    if request.param == "sqlite":
        path = tmp_path / "clients.db"
        sqlite3.connect(path).close()
        source = SourceDatabase("sqlite", f"sqlite:///{path}")
    else:
        server = request.getfixturevalue("postgres_server")
        name = f"clients_{abs(hash(request.node.nodeid)) % 10**8}"
        server.new_database(name)
        source = SourceDatabase("postgresql", server.url(name), server)
    yield source
    source.dispose()


def use_database(project, database, **settings) -> None:
    """Point the project's config at the database (table `clients`, new rows by `id`)."""
    config = json.loads(project.config_path.read_text())
    config.update(
        {
            "input_database_url": database.url,
            "input_table": "clients",
            "input_new_rows_column": "id",
            **settings,
        }
    )
    config = {key: value for key, value in config.items() if value is not None}
    project.config_path.write_text(json.dumps(config))


def stored(project, which=batchstore.OUTCOMES_FILE):
    config = project.config
    with open_history(config.history_path) as history:
        seqs = [batch.seq for batch in history.batches()]
    return batchstore.read_rows(config.ingested_dir, seqs, which)


def database_batches(project):
    with open_history(project.config.history_path) as history:
        return [batch for batch in history.batches() if batch.source.startswith("database ")]


def batch_meta(project, batch):
    folder = batchstore.batches_dir(project.config.ingested_dir) / batch.folder
    return batchstore.read_batch_meta(folder)


def all_stored_codes(project) -> list[str]:
    rows = [stored(project, which) for which in (batchstore.OUTCOMES_FILE, batchstore.CURRENT_FILE)]
    return sorted(pd.concat(rows)["corporation"])


# --- reading new rows -------------------------------------------------------------------------


def test_each_run_reads_only_the_rows_after_the_last_stored(project, database):
    database.create_clients()
    database.insert(client_rows(200, seed=11), first_id=1)
    use_database(project, database)
    first = ingest.run(project.config)
    assert "the database's new rows" in first.summary
    database.insert(client_rows(50, seed=12), first_id=201)
    second = ingest.run(project.config)
    third = ingest.run(project.config)

    batches = database_batches(project)
    assert [batch.labelled_rows + batch.current_rows for batch in batches] == [200, 50]
    read = [batch_meta(project, batch)["database"] for batch in batches]
    assert [(part["first"]["value"], part["last"]["value"]) for part in read] == [
        ("1", "200"),
        ("201", "250"),
    ]
    assert read[1]["after"] == {"type": "int", "value": "200"}
    assert [part["rows"] for part in read] == [200, 50]
    assert [batch.seq for batch in second.new_batches] == [batches[1].seq]
    assert third.new_batches == []
    # The folder's two files and the database's rows, each once.
    assert len(all_stored_codes(project)) == 600 + 250


def test_a_timestamp_column_says_which_rows_are_new(project, database):
    database.create_clients()
    database.insert(client_rows(30, seed=13), first_id=1)
    use_database(project, database, input_new_rows_column="added_at")
    ingest.run(project.config)
    database.insert(client_rows(10, seed=14), first_id=31)
    ingest.run(project.config)
    batches = database_batches(project)
    assert [batch.labelled_rows + batch.current_rows for batch in batches] == [30, 10]
    after = batch_meta(project, batches[1])["database"]["after"]
    assert after["type"] == ("datetime" if database.backend == "postgresql" else "text")
    assert after["value"].startswith("2026-01-01T00:30:00" if after["type"] == "datetime" else "2")


def test_late_rows_at_or_below_the_mark_are_not_read_and_said_once(project, database, caplog):
    database.create_clients()
    database.insert(client_rows(20, seed=15), first_id=100)
    use_database(project, database)
    ingest.run(project.config)
    late = client_rows(5, seed=16)
    database.insert(late, first_id=1)  # ids below the stored mark (119)
    assert ingest.run(project.config).new_batches == []
    database.insert(client_rows(3, seed=32), first_id=120)
    with caplog.at_level("WARNING"):
        ingest.run(project.config)
    warned = [text for text in caplog.messages if "at or below 119 arrived after" in text]
    assert len(warned) == 1
    assert "5 rows with id" in warned[0]
    database.insert(client_rows(2, seed=33), first_id=123)
    caplog.clear()
    with caplog.at_level("WARNING"):
        ingest.run(project.config)
    assert not [text for text in caplog.messages if "arrived after" in text]  # said once
    assert not set(late["corporation"]) & set(all_stored_codes(project))
    notes = [batch_meta(project, batch)["database"] for batch in database_batches(project)]
    assert [part["late_rows"] for part in notes] == [0, 5, 0]
    assert [part["rows_through"] for part in notes] == [20, 28, 30]


def test_bad_rows_are_named_by_their_key_and_the_good_ones_stored(project, database, caplog):
    database.create_clients()
    rows = client_rows(10, seed=17)
    database.insert(rows, first_id=1)
    database.execute("UPDATE clients SET number_of_employees = -3 WHERE id = 4")
    database.execute("UPDATE clients SET corporation = NULL WHERE id = 7")
    database.execute(
        "UPDATE clients SET corporation = NULL, lastmonth_activity = NULL,"
        " lastyear_activity = NULL, number_of_employees = NULL, exited = NULL WHERE id = 9"
    )
    use_database(project, database)
    with caplog.at_level("WARNING"):
        ingest.run(project.config)
    messages = [record.getMessage() for record in caplog.records]
    assert any(text.endswith("row id 4: number_of_employees: -3 is negative") for text in messages)
    assert any(text.endswith("row id 7: corporation is empty") for text in messages)
    assert any(text.endswith("row id 9: every column is empty") for text in messages)
    [batch] = database_batches(project)
    assert (batch.labelled_rows + batch.current_rows, batch.rejected_rows) == (7, 3)
    record = (project.config.ingested_dir / "ingestedfiles.txt").read_text()
    assert "10 rows with id 1 to 10, 3 rejected" in record


def test_rows_without_an_outcome_are_current_clients(project, database):
    database.create_clients()
    rows = client_rows(12, seed=18)
    rows.loc[:4, "exited"] = None
    database.insert(rows, first_id=1)
    use_database(project, database)
    ingest.run(project.config)
    [batch] = database_batches(project)
    assert (batch.labelled_rows, batch.current_rows) == (7, 5)
    current = pd.read_csv(project.config.ingested_dir / "currentclients.csv")
    assert set(rows["corporation"][:5]) <= set(current["corporation"])


def test_other_column_names_are_mapped_to_the_course_names(project, database):
    database.create_clients(table="accounts", corporation="client_code")
    database.insert(
        client_rows(15, seed=19), first_id=1, table="accounts", corporation="client_code"
    )
    use_database(
        project, database, input_table="accounts", input_columns={"corporation": "client_code"}
    )
    (project.input_dir / "batch1.csv").unlink()
    (project.input_dir / "batch2.csv").unlink()
    ingest.run(project.config)
    assert all_stored_codes(project) == sorted(client_rows(15, seed=19)["corporation"])


def test_a_query_is_read_like_a_table(project, database):
    database.create_clients()
    database.insert(client_rows(20, seed=20), first_id=1)
    use_database(
        project,
        database,
        input_table=None,
        input_query="SELECT * FROM clients\nWHERE id > 0 AND corporation <> 'no:such';",
    )
    ingest.run(project.config)
    [batch] = database_batches(project)
    assert batch.labelled_rows + batch.current_rows == 20
    assert "input_query" in batch.source


# --- problems -----------------------------------------------------------------------------------


def test_a_missing_column_is_one_line_naming_it_and_the_folder_still_ingested(project, database):
    database.create_clients()
    database.insert(client_rows(5, seed=21), first_id=1)
    use_database(project, database, input_columns={"lastyear_activity": "yearly"})
    result = ingest.run(project.config)
    assert len(result.waiting) == 1
    assert "has no column yearly (input_columns maps lastyear_activity to it)" in result.waiting[0]
    assert [batch.source for batch in result.new_batches] == ["batch1.csv", "batch2.csv"]
    use_database(project, database, input_columns={})
    retried = ingest.run(project.config)
    assert len(database_batches(project)) == 1
    assert retried.waiting == []


def test_an_unreachable_database_is_retried_by_the_next_run(project, database):
    if database.backend == "sqlite":
        url = f"sqlite:///{project.root / 'absent.db'}"
    else:
        from dbservers import free_port

        url = database.url.replace(f":{database.server.port}/", f":{free_port()}/")
    use_database(project, database, input_database_url=url)
    result = ingest.run(project.config)
    [problem] = result.waiting
    assert "cannot reach the database" in problem
    assert "\n" not in problem
    assert len(result.new_batches) == 2  # the folder's files
    assert not (project.root / "absent.db").exists()  # never created


def test_a_query_that_runs_too_long_is_stopped(project, database):
    database.create_clients()
    database.insert(client_rows(5, seed=22), first_id=1)
    slow = (
        "SELECT c.* FROM clients c, (SELECT pg_sleep(3)) AS pause"
        if database.backend == "postgresql"
        else "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50000000)"
        " SELECT c.* FROM clients c WHERE (SELECT count(*) FROM n) > 0"
    )
    use_database(
        project, database, input_table=None, input_query=slow, input_query_timeout_seconds=0.5
    )
    result = ingest.run(project.config)
    [problem] = result.waiting
    assert any(word in problem for word in ("timeout", "interrupted")), problem
    assert database_batches(project) == []


def test_the_connection_lost_in_the_middle_of_a_read_stores_nothing(project, database, monkeypatch):
    database.create_clients()
    database.insert(client_rows(3000, seed=23), first_id=1)
    use_database(project, database)
    monkeypatch.setattr(dbread, "CHUNK_ROWS", 500)
    real_check = dbread.check_chunk
    seen = []

    def check_then_lose_the_connection(source, rows, names, state):
        seen.append(len(rows))
        if len(seen) == 2:
            lose_connection(database, state)
        return real_check(source, rows, names, state)

    monkeypatch.setattr(dbread, "check_chunk", check_then_lose_the_connection)
    result = ingest.run(project.config)
    [problem] = result.waiting
    assert "none stored" in problem, problem
    assert "\n" not in problem
    assert database_batches(project) == []
    monkeypatch.setattr(dbread, "check_chunk", real_check)
    ingest.run(project.config)
    [batch] = database_batches(project)
    assert batch.labelled_rows + batch.current_rows == 3000


def lose_connection(database, state) -> None:
    """End the reading connection from outside: PostgreSQL's pg_terminate_backend (the next
    fetch fails). SQLite has no server to lose: its driver's error in the middle of a read is
    raised instead."""
    if database.backend == "postgresql":
        with database.server.admin_connect() as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE usename = 'risk' AND pid <> pg_backend_pid()"
            )
        return
    from sqlalchemy.exc import OperationalError

    lost = sqlite3.OperationalError("disk I/O error")
    raise OperationalError("FETCH", {}, lost, connection_invalidated=True)


# --- credentials --------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["url", "environment"])
def test_the_password_never_appears(project, postgres_server, monkeypatch, caplog, where):
    import dbservers

    postgres_server.new_database("secrets")
    source = SourceDatabase("postgresql", postgres_server.url("secrets"))
    source.create_clients()
    source.insert(client_rows(5, seed=24), first_id=1)
    url = postgres_server.url("secrets", password=where == "url")
    if where == "environment":
        monkeypatch.setenv(dbsource.PASSWORD_ENV, dbservers.PASSWORD)
    use_database(project, source, input_database_url=url)
    with caplog.at_level("DEBUG"):
        ingest.run(project.config)
        source.execute("ALTER TABLE clients RENAME COLUMN lastmonth_activity TO gone")
        failed = ingest.run(project.config)
    source.dispose()
    assert len(database_batches(project)) == 1
    assert "has no column lastmonth_activity" in failed.waiting[0]
    secret_forms = {dbservers.PASSWORD, "pa%3Ass%40w%2Frd%251"}
    texts = [caplog.text, *failed.waiting]
    for path in project.config.ingested_dir.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".txt", ".csv", ".db"):
            texts.append(path.read_bytes().decode("utf-8", "replace"))
    for text in texts:
        assert not any(form in text for form in secret_forms)
    assert "risk:***@" in database_batches(project)[0].source


def test_a_wrong_password_is_one_line_without_it(project, postgres_server):
    postgres_server.new_database("wrongpw")
    url = postgres_server.url("wrongpw").replace("pa%3Ass", "not-the-pa%3Ass")
    use_database(project, SimpleNamespace(url=url))
    result = ingest.run(project.config)
    [problem] = result.waiting
    assert "password authentication failed" in problem
    assert "not-the-pa" not in problem
    assert "\n" not in problem


# --- the settings -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({"input_table": None}, "needs input_table or input_query"),
        ({"input_query": "SELECT 1"}, "needs input_table or input_query (exactly one)"),
        ({"input_new_rows_column": None}, "needs input_new_rows_column"),
        ({"input_new_rows_column": "id; DROP"}, "'input_new_rows_column' must be a plain name"),
        ({"input_columns": {"client": "x"}}, "input_columns: unknown column(s) client"),
        ({"input_columns": ["x"]}, "'input_columns' must be a JSON object"),
        ({"input_database_url": None}, "need(s) input_database_url"),
    ],
)
def test_database_settings_that_do_not_go_together_are_one_line(project, settings, words):
    from clientrisk.config import load_config

    use_database(project, SimpleNamespace(url="sqlite:///x.db"), **settings)
    with pytest.raises(ConfigError) as error:
        load_config(project.config_path)
    assert words in str(error.value)


# --- bounded reading ----------------------------------------------------------------------------


def test_many_rows_are_read_in_two_queries_and_chunks(project, database, monkeypatch):
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    database.create_clients()
    database.insert(client_rows(5000, seed=25), first_id=1)
    use_database(project, database)
    monkeypatch.setattr(dbread, "CHUNK_ROWS", 1000)
    statements, chunk_sizes = [], []
    real_check = dbread.check_chunk

    def counted(source, rows, names, state):
        chunk_sizes.append(len(rows))
        return real_check(source, rows, names, state)

    monkeypatch.setattr(dbread, "check_chunk", counted)

    def before(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", before)
    try:
        ingest.run(project.config)
        first = [text for text in statements if "clients" in text]
        statements.clear()
        database.insert(client_rows(10, seed=34), first_id=5001)
        ingest.run(project.config)
        second = [text for text in statements if "clients" in text and "INSERT" not in text]
    finally:
        event.remove(Engine, "before_cursor_execute", before)
    assert len(first) == 2, first  # the shape, then the rows streamed
    assert len(second) == 3, second  # and the count of the rows at or below the mark
    assert max(chunk_sizes) <= 1000
    assert sum(chunk_sizes) == 5010
    batch = database_batches(project)[0]
    assert batch.labelled_rows + batch.current_rows == 5000


# --- kill -9 while a batch from the database is stored ---------------------------------------

KILL_AT = """
import os, signal, sys
sys.path.insert(0, {project!r})
point, config = sys.argv[1], sys.argv[2]
from clientrisk.config import load_config
from clientrisk.data import dbread, ingest

real_rename = os.rename
def rename(source, destination):
    real_rename(source, destination)
    if point == "after batch rename" and "batches" in str(destination):
        os.kill(os.getpid(), signal.SIGKILL)
os.rename = rename

real_check = dbread.check_chunk
calls = []
def check(*args):
    calls.append(1)
    if point == "mid read" and len(calls) == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return real_check(*args)
dbread.check_chunk = check
dbread.CHUNK_ROWS = 400
ingest.run(load_config(config))
"""


@pytest.mark.slow
@pytest.mark.parametrize("point", ["mid read", "after batch rename"])
def test_kill_9_while_a_database_batch_is_stored_leaves_no_gap_and_no_row_twice(
    project, database, point
):
    database.create_clients()
    database.insert(client_rows(1000, seed=26), first_id=1)
    use_database(project, database)
    (project.input_dir / "batch1.csv").unlink()
    (project.input_dir / "batch2.csv").unlink()
    ingest.run(project.config)
    database.insert(client_rows(1000, seed=27), first_id=1001)
    killed = subprocess.run(
        [sys.executable, "-c", KILL_AT.format(project=str(PROJECT_DIR)), point,
         str(project.config_path)],
        capture_output=True, text=True, cwd=PROJECT_DIR, timeout=120,
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    ingest.run(project.config)
    database.insert(client_rows(10, seed=28), first_id=2001)
    ingest.run(project.config)
    codes = all_stored_codes(project)
    expected = pd.concat([client_rows(1000, 26), client_rows(1000, 27), client_rows(10, 28)])
    assert codes == sorted(expected["corporation"])  # every row, once
    ranges = [batch_meta(project, batch)["database"] for batch in database_batches(project)]
    assert [(part["first"]["value"], part["last"]["value"]) for part in ranges] == [
        ("1", "1000"),
        ("1001", "2000"),
        ("2001", "2010"),
    ]


# --- the quiet tick -------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_quiet_tick_asks_the_database_one_small_query(deployed, database, monkeypatch):
    import fullprocess
    from clientrisk.pipeline import quiettick

    monkeypatch.setenv("RISK_API_URL", "http://127.0.0.1:9")  # no API: a refused port
    database.create_clients()
    database.insert(client_rows(150, seed=29), first_id=1)
    use_database(deployed, database)
    assert fullprocess.main(deployed.args()) == 0  # reads the rows
    assert fullprocess.main(deployed.args()) == 0  # nothing new: leaves the stamp
    stamp = quiettick._read_stamp(str(deployed.config_path))
    assert stamp is not None, "no quiet stamp"
    values, _ = stamp
    assert values["db_backend"] == database.backend
    assert quiettick._newest_in_database(values) == values["db_newest"]
    assert values["db_newest"].strip("'") == "150"
    assert "aa:ss" not in json.dumps(values)  # the password is not in the stamp
    modules = subprocess.run(
        [sys.executable, "-c", "import sys; from clientrisk.pipeline import quiettick;"
         f" values, _ = quiettick._read_stamp({str(deployed.config_path)!r});"
         " print(quiettick._newest_in_database(values),"
         " [name for name in ('sqlalchemy', 'psycopg') if name in sys.modules])"],
        capture_output=True, text=True, cwd=PROJECT_DIR,
    )  # fmt: skip
    assert modules.stdout.split() == [values["db_newest"], "[]"], modules.stderr
    assert quiettick.run([], str(deployed.config_path)) == 0
    database.insert(client_rows(3, seed=30), first_id=151)
    assert quiettick._newest_in_database(values).strip("'") == "153"
    assert quiettick.run([], str(deployed.config_path)) is None  # the full decision runs


def test_stamps_keep_queries_over_several_lines():
    from clientrisk.pipeline import quiettick

    text = "SELECT max(id)\n\tFROM (SELECT * FROM a -- note\n) AS s\\x"
    assert quiettick._unescape(quiettick._escape(text)) == text
    assert "\n" not in quiettick._escape(text)
    assert "\t" not in quiettick._escape(text)


def test_the_quiet_ticks_wire_probe_asks_postgresql_itself(postgres_server):
    import dbservers
    from clientrisk.pipeline import pgwire

    postgres_server.new_database("wire")
    tcp = {"host": "127.0.0.1", "port": postgres_server.port, "dbname": "wire", "user": "risk"}
    assert pgwire.first_cell(tcp, dbservers.PASSWORD, "SELECT CAST(41 + 1 AS TEXT)", 5) == "42"
    assert pgwire.first_cell(tcp, dbservers.PASSWORD, "SELECT NULL", 5) is None
    with pytest.raises(pgwire.ProbeError, match="password authentication failed"):
        pgwire.first_cell(tcp, "not it", "SELECT 1", 5)
    with pytest.raises(pgwire.ProbeError, match="does not exist"):
        pgwire.first_cell(tcp, dbservers.PASSWORD, "SELECT max(id) FROM nowhere", 5)
    with pytest.raises(pgwire.ProbeError, match="statement timeout"):
        pgwire.first_cell(tcp, dbservers.PASSWORD, "SELECT CAST(pg_sleep(3) AS TEXT)", 0.5)
    if postgres_server.tls:  # the server offers TLS: asked for, or refused
        own = "SELECT CAST(ssl AS TEXT) FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        for sslmode, encrypted in (("require", "true"), ("prefer", "true"), ("disable", "false")):
            asked = {**tcp, "sslmode": sslmode}
            assert pgwire.first_cell(asked, dbservers.PASSWORD, own, 5) == encrypted
        with postgres_server.admin_connect() as admin:
            encrypted = admin.execute(
                "SELECT count(*) FROM pg_stat_ssl WHERE ssl AND pid <> pg_backend_pid()"
            ).fetchone()[0]
        assert encrypted == 0  # each probe closed its connection
    with pytest.raises(pgwire.ProbeError, match="sslmode verify-full"):
        pgwire.first_cell({**tcp, "sslmode": "verify-full"}, dbservers.PASSWORD, "SELECT 1", 5)
    local = {"host": str(postgres_server.socket_dir), "port": postgres_server.port}
    assert pgwire.first_cell({**local, "user": "postgres"}, None, "SELECT '1'", 5) == "1"
    closed = {**tcp, "port": dbservers.free_port()}
    with pytest.raises(pgwire.ProbeError, match="cannot connect"):
        pgwire.first_cell(closed, dbservers.PASSWORD, "SELECT 1", 5)


@pytest.mark.parametrize("module", [dbsource, dbread])
def test_the_public_names_of_the_source_modules_are_pinned(module):
    expected = {
        dbsource: {"DatabaseSource", "SourceProblem", "source_of", "new_rows_waiting",
                   "quiet_probe", "stored_mark", "PASSWORD_ENV"},
        dbread: {"CHUNK_ROWS", "ingest_database", "check_chunk"},
    }[module]  # fmt: skip
    assert expected <= set(module.__all__)
    assert all(hasattr(module, name) for name in module.__all__)


@pytest.mark.slow
def test_a_run_with_the_database_down_ingests_the_folder_and_says_why(
    deployed, postgres_server, monkeypatch
):
    import dbservers
    import fullprocess
    from conftest import client_rows as rows_of

    monkeypatch.setenv("RISK_API_URL", "http://127.0.0.1:9")  # no API: a refused port
    down = postgres_server.url("clients").replace(
        f":{postgres_server.port}/", f":{dbservers.free_port()}/"
    )
    use_database(deployed, SimpleNamespace(url=down))
    deployed.write_input("batch3.csv", rows_of(200, seed=35))
    assert fullprocess.main(deployed.args()) == 0
    log = (deployed.root / "logs" / "fullprocess.jsonl").read_text()
    record = json.loads(log.splitlines()[-1])
    [waiting] = record["waiting"]
    assert "cannot reach the database" in waiting
    assert "batch3.csv" in record["new_files"]
    assert not (deployed.root / ".config.json.quiet").exists()
    path = deployed.config.history_path
    history = [part.read_bytes() for part in path.parent.glob(f"{path.name}*")]  # WAL too
    for text in (log.encode(), *history, waiting.encode()):
        assert b"pa%3Ass" not in text
        assert dbservers.PASSWORD.encode() not in text


def test_the_quiet_tick_asks_with_psycopg_for_settings_the_wire_probe_does_not_speak(
    project, postgres_server, monkeypatch
):
    import dbservers
    from clientrisk.pipeline import quiettick

    postgres_server.new_database("other")
    source = SourceDatabase("postgresql", postgres_server.url("other"))
    source.create_clients()
    source.insert(client_rows(4, seed=36), first_id=1)
    source.dispose()
    url = postgres_server.url("other", password=False) + "?application_name=risk"
    monkeypatch.setenv(dbsource.PASSWORD_ENV, dbservers.PASSWORD)
    use_database(project, SimpleNamespace(url=url))
    config = project.config
    found = dbsource.source_of(config.settings, config.path.parent)
    fields = dbsource.quiet_probe(found, dbsource.newest_value(found), url)
    assert fields["db_backend"] == "psycopg"
    assert fields["db_password"] == "env"
    assert dbservers.PASSWORD not in json.dumps(fields)
    values = {**fields, "config": str(project.config_path)}
    assert quiettick._newest_in_database(values) == fields["db_newest"] == "4"
