"""The history database: schema and migrations, transactions that survive kill -9, and what the
steps write into it (reopened and read back, as a user would). The tests that take
`history_location` run on a SQLite file and on a throw-away PostgreSQL server."""

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pandas as pd
import pytest

from clientrisk.config import PROJECT_DIR
from clientrisk.history import database
from clientrisk.history.database import HistoryError, open_history
from conftest import client_rows, new_history_database, run_steps, use_history_server


def test_a_new_database_has_the_current_schema(history_location):
    with open_history(history_location) as opened:
        assert opened.fact("created_at").endswith("Z")
        assert opened.batches() == []
        assert opened.integrity_problems() == []
    with open_history(history_location) as opened:
        assert opened.db.execute("SELECT version FROM schema_version").fetchall() == [
            (database.SCHEMA_VERSION,)
        ]


def test_a_new_file_is_in_wal_mode(tmp_path):
    with open_history(tmp_path / "h.db"):
        pass
    db = sqlite3.connect(tmp_path / "h.db")
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_the_change_counter_counts_what_the_system_knows_and_not_its_runs(history_location):
    with open_history(history_location) as opened:
        start = opened.generation()
        run_id = opened.start_run(1, "2026-01-01T00:00:00Z", "config.json")
        opened.finish_run(run_id, {"outcome": "no new data", "finished_at": "x", "steps": {}})
        assert opened.generation() == start
        opened.note_fact("kept", "yes")
        opened.record_reports("abc", "v0001", 1)
        assert opened.generation() == start + 2
        opened.record_ranking("abc", "v0001", 1, [(1, "c1", 0.9)])
        assert opened.generation() > start + 2


def test_migrations_run_in_order_and_keep_the_data(history_location, monkeypatch):
    with open_history(history_location) as opened:
        opened.note_fact("kept", "yes")

    def add_notes(db):
        db.execute("CREATE TABLE notes (text TEXT)")
        db.execute("INSERT INTO notes VALUES ('migrated')")

    migrations = (*database.MIGRATIONS, add_notes)
    monkeypatch.setattr(database, "MIGRATIONS", migrations)
    monkeypatch.setattr(database, "SCHEMA_VERSION", len(migrations))
    with open_history(history_location) as opened:
        assert opened.fact("kept") == "yes"
        assert opened.db.execute("SELECT text FROM notes").fetchall() == [("migrated",)]
    with open_history(history_location) as opened:  # migrated once only
        assert opened.db.execute("SELECT count(*) FROM notes").fetchone() == (1,)


def test_a_migration_that_fails_half_way_changes_nothing(history_location, monkeypatch):
    with open_history(history_location):
        pass

    def half(db):
        db.execute("CREATE TABLE notes (text TEXT)")
        raise sqlite3.OperationalError("disk I/O error")

    migrations = (*database.MIGRATIONS, half)
    monkeypatch.setattr(database, "MIGRATIONS", migrations)
    monkeypatch.setattr(database, "SCHEMA_VERSION", len(migrations))
    with pytest.raises(HistoryError, match="disk I/O error"), open_history(history_location):
        pass
    monkeypatch.undo()
    with open_history(history_location) as opened:
        assert not table_exists(opened, "notes")
        version = opened.db.execute("SELECT version FROM schema_version").fetchone()
    assert version == (len(migrations) - 1,)


def table_exists(opened, name: str) -> bool:
    if isinstance(opened.db, sqlite3.Connection):
        sql = "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?"
    else:
        sql = "SELECT count(*) FROM information_schema.tables WHERE table_name = ?"
    return opened.db.execute(sql, (name,)).fetchone()[0] == 1


def test_a_database_from_newer_code_is_refused(history_location):
    with open_history(history_location) as opened:
        opened.db.execute("UPDATE schema_version SET version = 99")
    expected = "schema version 99 is newer than this code knows"
    with pytest.raises(HistoryError, match=expected), open_history(history_location):
        pass


def test_a_file_that_is_not_a_database_is_refused(tmp_path):
    (tmp_path / "h.db").write_bytes(b"this is not sqlite" * 100)
    expected = "not a usable history database"
    with pytest.raises(HistoryError, match=expected), open_history(tmp_path / "h.db"):
        pass


def test_consecutive_quiet_ticks_share_one_row(history_location):
    record = {"started_at": "t1", "finished_at": "t1", "outcome": "no new data", "reason": "r"}
    with open_history(history_location) as opened:
        for second in range(5):
            opened.finish_run(None, {**record, "finished_at": f"t{second}"})
        opened.finish_run(None, {**record, "outcome": "no drift"})
        opened.finish_run(None, record)
        runs = opened.latest_runs()
    assert [(run.outcome, run.repeats) for run in runs] == [
        ("no new data", 1),
        ("no drift", 1),
        ("no new data", 5),
    ]
    assert runs[-1].last_finished_at == "t4"


def test_only_the_newest_rankings_keep_their_entries(history_location):
    with open_history(history_location) as opened:
        for number in range(database.KEEP_RANKINGS + 3):
            opened.record_ranking("sha", "v0001", number, [(1, "abcd", 0.5), (2, "efgh", 0.1)])
        kept = opened.db.execute("SELECT count(DISTINCT ranking) FROM ranking_entries").fetchone()
        newest = opened.rankings(2)
    assert kept == (database.KEEP_RANKINGS,)
    assert [entry[1] for entry in newest[0]["entries"]] == ["abcd", "efgh"]
    assert newest[0]["through_batch"] == database.KEEP_RANKINGS + 2


# Writes transactions of three rows with the same tag until it is killed.
WRITER = """
import sys
sys.path.insert(0, {project!r})
from clientrisk.history.database import open_history
with open_history({path!r}) as opened:
    print("ready", flush=True)
    tag = 0
    while True:
        tag += 1
        with opened.transaction():
            for step in range(3):
                opened.record_score({{"rows": step, "f1": 0.5}}, f"tag{{tag}}", "test", "d")
"""


@pytest.mark.parametrize("delay", [0.05, 0.2, 0.5])
def test_kill_9_mid_write_leaves_whole_transactions(history_location, delay):
    path = str(history_location)
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER.format(project=str(PROJECT_DIR), path=path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout.readline().strip() == "ready"
    time.sleep(delay)
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    with open_history(path) as opened:
        assert opened.integrity_problems() == []
        counts = opened.db.execute(
            "SELECT model_sha256, count(*) FROM scores GROUP BY model_sha256"
        ).fetchall()
    assert counts, "the writer committed nothing before it was killed"
    assert {count for _, count in counts} == {3}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_steps_record_batches_scores_deployments_and_rankings(project, backend, request):
    if backend == "postgresql":
        use_history_server(
            project, new_history_database(request.getfixturevalue("postgres_server"))
        )
    run_steps(project, "ingestion", "training", "scoring", "deployment", "diagnostics")
    run_steps(project, "reporting")
    assert (project.root / "ingesteddata" / "history.db").exists() == (backend == "sqlite")
    with open_history(project.config.history_location) as opened:
        assert [batch.source for batch in opened.batches()] == ["batch1.csv", "batch2.csv"]
        assert [score["context"] for score in opened.scores()] == ["test"]
        assert [change["to_version"] for change in opened.deployments()] == ["v0001"]
        ranking = opened.rankings(1)[0]
        assert ranking["model_version"] == "v0001"
        stored = pd.read_csv(project.root / "ingesteddata" / "finaldata.csv")
        # Current clients only: the 600 stored clients but those who left.
        assert ranking["clients"] == len(ranking["entries"]) == (stored["exited"] == 0).sum()
        assert opened.latest_reports()[0] == opened.scores()[0]["model_sha256"]


def test_rollback_is_mirrored(deployed):
    import deployment

    deployed.write_input("more.csv", client_rows(200, seed=11))
    run_steps(deployed, "ingestion", "training", "scoring", "deployment")
    assert deployment.main(deployed.args("--rollback")) == 0
    with open_history(deployed.config.history_path) as opened:
        changes = opened.deployments()
    assert [(change["action"], change["to_version"]) for change in changes] == [
        ("deploy", "v0001"),
        ("deploy", "v0002"),
        ("rollback", "v0001"),
    ]


def test_deployments_keep_their_order_when_the_clock_was_set_back(history_location):
    changes = [
        {"time": "2026-05-01T12:00:00Z", "action": "deploy", "to_version": "v0001"},
        {"time": "2026-05-01T13:00:00Z", "action": "deploy", "to_version": "v0002"},
        # The clock was set back an hour and a half before this one.
        {"time": "2026-05-01T11:30:00Z", "action": "rollback", "to_version": "v0001"},
    ]
    with open_history(history_location) as opened:
        assert opened.sync_deployments(changes) == 3
        assert opened.sync_deployments(changes) == 0  # each change once
        assert [change["to_version"] for change in opened.deployments()] == [
            "v0001",
            "v0002",
            "v0001",
        ]


def test_challenger_verdicts_are_newest_first_when_the_clock_was_set_back(
    history_location, monkeypatch
):
    times = iter(
        [
            "2026-05-01T12:00:00Z",
            "2026-05-01T13:00:00Z",
            "2026-05-01T11:30:00Z",
            "2026-05-01T11:40:00Z",
        ]
    )
    with open_history(history_location) as opened:
        monkeypatch.setattr(database, "utc_now", lambda: next(times))
        opened.record_challenger("aaa", 1, "kept out", "first")
        opened.record_challenger("bbb", 2, "kept out", "second")
        opened.record_challenger("aaa", 3, "kept out", "third, after the clock was set back")
        assert [row["run"] for row in opened.challengers()] == [3, 2, 1]
        assert opened.challenger_verdict("aaa")[2] == 3
        # A verdict decided again (the same model and run) is the newest.
        opened.record_challenger("bbb", 2, "deployed", "decided again")
        assert [row["run"] for row in opened.challengers()] == [2, 3, 1]
        assert opened.challenger_verdict("bbb")[:2] == ("deployed", "decided again")


def test_a_writer_gives_up_as_busy_when_another_holds_the_write_lock(history_location, monkeypatch):
    monkeypatch.setattr(database, "BUSY_TIMEOUT_SECONDS", 1)
    with open_history(history_location) as holder, open_history(history_location) as waiter:
        with holder.transaction():
            holder.note_fact("held", "yes")
            started = time.monotonic()
            with pytest.raises(database.HistoryBusy, match="giving up, to be retried"):
                waiter.note_fact("waiting", "yes")
            assert 0.8 < time.monotonic() - started < 10
            assert waiter.fact("held") is None  # not committed yet: not seen
        waiter.note_fact("waiting", "yes")  # free again
        assert (waiter.fact("held"), holder.fact("waiting")) == ("yes", "yes")


def test_a_full_disk_names_the_history_database(tmp_path):
    path = tmp_path / "h.db"
    with open_history(path) as opened:
        pages = opened.db.execute("PRAGMA page_count").fetchone()[0]
        opened.db.execute(f"PRAGMA max_page_count = {pages}")  # as full as a full disk
        with pytest.raises(HistoryError, match=f"{path}: cannot write: database or disk is full"):
            opened.note_fact("a large fact", "x" * 100_000)


def test_an_alert_is_claimed_once_and_what_its_receivers_made_of_it_is_kept(history_location):
    with open_history(history_location) as opened:
        assert opened.claim_alert("drift:run1", 1, "Drift", "found", ["webhook", "email"])
        assert not opened.claim_alert("drift:run1", 2, "Drift", "again", ["webhook"])
        opened.finish_alert("drift:run1", ["webhook"], {"email": "refused"})
        opened.record_challenger("aaa", 1, "kept out", "worse")
        opened.record_drift(None, "aaa", [1, 2], 300, "model", "drift", {"p": 0.01})
        opened.record_drift(None, "aaa", [3], 300, "data", "drift", {"p": 0.02})
        opened.finish_run(None, {"outcome": "failed", "started_at": "t", "finished_at": "t"})
        opened.finish_run(None, {"outcome": "failed", "started_at": "u", "finished_at": "u"})
    with open_history(history_location) as opened:
        [alert] = opened.alerts()
        assert (alert.key, alert.run, alert.text) == ("drift:run1", 1, "found")
        assert opened.failed_deliveries() == 1
        assert [row["run"] for row in opened.kept_out()] == [1]
        assert [run.started_at for run in opened.failed_streak()] == ["t", "u"]
        assert opened.run_counts() == {"failed": 2}
        assert opened.drift_runs() == 2  # two checks outside a run
        assert [check["batches"] for check in opened.drift_found()] == ["3", "1,2"]
