"""The history on a PostgreSQL server (`history_db_url`): the setting, its password and its
errors, a database at an older schema version, and the layout of docs/operations.md: a pipeline
host that writes the history and API hosts, with folders of their own, that read it."""

import json
import os
import re
import subprocess
import sys
import time
from urllib.parse import quote

import pytest
import requests

import dbservers
import fullprocess
from clientrisk.api.app import create_app
from clientrisk.config import PROJECT_DIR
from clientrisk.errors import ConfigError
from clientrisk.history import database, postgres
from clientrisk.history.database import HistoryError, open_history
from conftest import Project, client_rows, new_history_database, use_history_server

SECRETS = (dbservers.PASSWORD, quote(dbservers.PASSWORD, safe=""))


@pytest.fixture(autouse=True)
def no_api(monkeypatch):
    monkeypatch.setenv("RISK_API_URL", "http://127.0.0.1:9")
    monkeypatch.delenv("RISK_API_TOKEN", raising=False)
    monkeypatch.delenv(postgres.PASSWORD_ENV, raising=False)


def set_config(project: Project, **settings) -> None:
    config = json.loads(project.config_path.read_text())
    project.config_path.write_text(json.dumps({**config, **settings}))


# --- the setting -------------------------------------------------------------------------------


def test_a_history_file_and_a_history_server_together_are_refused(project):
    set_config(project, history_db_path="h.db", history_db_url="postgresql://risk@db/history")
    with pytest.raises(ConfigError, match="history_db_path and history_db_url are both set"):
        _ = project.config


@pytest.mark.parametrize(
    "url",
    [
        "mysql://risk:s3cret@db/history",
        "postgresql://risk:s3cret@db",
        "postgresql://risk:s3cret@db:port/history",
    ],
)
def test_a_history_url_that_is_not_postgresql_is_refused_without_its_password(project, url):
    set_config(project, history_db_url=url)
    with pytest.raises(ConfigError, match="'history_db_url' must be postgresql://") as caught:
        _ = project.config
    assert "s3cret" not in str(caught.value)


# --- connecting ----------------------------------------------------------------------------------


def test_an_unreachable_server_is_one_line_without_the_password():
    url = f"postgresql://risk:s3cret@127.0.0.1:{dbservers.free_port()}/history"
    with pytest.raises(HistoryError) as caught, open_history(url):
        pass
    text = str(caught.value)
    assert text.startswith("postgresql://risk:***@127.0.0.1:")
    assert "cannot open the history database" in text
    assert "\n" not in text
    assert "s3cret" not in text


def test_a_wrong_password_is_one_line_without_it(postgres_server):
    url = new_history_database(postgres_server, password=False)
    wrong = url.replace("risk@", "risk:n0t-it%40all@")
    failed = pytest.raises(HistoryError, match="password authentication failed")
    with failed as caught, open_history(wrong):
        pass
    assert "\n" not in str(caught.value)
    assert "n0t-it" not in str(caught.value)


def test_the_password_can_come_from_the_environment(postgres_server, monkeypatch):
    url = new_history_database(postgres_server, password=False)
    with pytest.raises(HistoryError, match="cannot open the history database"), open_history(url):
        pass
    monkeypatch.setenv(postgres.PASSWORD_ENV, dbservers.PASSWORD)
    with open_history(url) as opened:
        opened.note_fact("reached", "yes")
    with open_history(url) as opened:
        assert opened.fact("reached") == "yes"


# --- the schema -----------------------------------------------------------------------------------


def test_a_database_at_an_older_schema_version_migrates_and_keeps_its_rows(
    postgres_server, monkeypatch
):
    url = new_history_database(postgres_server)
    monkeypatch.setattr(database, "MIGRATIONS", database.MIGRATIONS[:2])
    monkeypatch.setattr(database, "SCHEMA_VERSION", 2)
    with open_history(url) as opened:  # version 2: no change counter, no hold-back share
        opened.record_score({"rows": 50, "f1": 0.625}, "old", "test", "testdata.csv")
        opened.record_reports("old", "v0001", 3)
        assert not opened.db.table_exists("changes")
    monkeypatch.undo()
    with open_history(url) as opened:
        version = opened.db.execute("SELECT version FROM schema_version").fetchone()[0]
        assert version == database.SCHEMA_VERSION
        assert [(s["model_sha256"], s["f1"]) for s in opened.scores()] == [("old", 0.625)]
        assert opened.latest_reports()[:2] == ("old", 3)
        counted = opened.generation()
        opened.record_ranking("new", "v0002", 4, [(1, "abcd", 0.75)], hold_back_share=0.2)
        assert opened.generation() == counted + 1
        assert opened.rankings(1)[0]["hold_back_share"] == 0.2


def test_processes_opening_a_new_database_at_once_create_one_schema(postgres_server):
    url = new_history_database(postgres_server)
    script = (
        f"import sys; sys.path.insert(0, {str(PROJECT_DIR)!r})\n"
        "from clientrisk.history.database import open_history\n"
        f"with open_history({url!r}) as opened:\n"
        "    opened.note_fact('opened by ' + sys.argv[1], 'yes')\n"
    )
    openers = [subprocess.Popen([sys.executable, "-c", script, str(n)]) for n in range(4)]
    assert [opener.wait(timeout=60) for opener in openers] == [0] * 4
    with open_history(url) as opened:
        assert opened.db.execute("SELECT count(*) FROM schema_version").fetchone()[0] == 1
        assert all(opened.fact(f"opened by {n}") == "yes" for n in range(4))
        assert opened.fact("created_at") is not None


# --- one pipeline host, API hosts ----------------------------------------------------------------


def runs_section(html: str) -> str:
    return re.search(r'<section[^>]*id="runs">.*?</section>', html, re.S).group(0)


def api_host(pipeline: Project, root) -> Project:
    """An API host's project: folders of its own, the pipeline's deployment and models folders
    (shared storage) and its history database (the same URL)."""
    root.mkdir(parents=True)
    (root / "sourcedata").mkdir()
    (root / "testdata").mkdir()
    shared = json.loads(pipeline.config_path.read_text())
    config = {
        **shared,
        "input_folder_path": "sourcedata",
        "output_folder_path": "ingesteddata",
        "test_data_path": "testdata",
        "output_model_path": str(pipeline.root / "models"),
        "prod_deployment_path": str(pipeline.root / "production_deployment"),
    }
    (root / "config.json").write_text(json.dumps(config))
    return Project(root)


def dashboard(project: Project) -> str:
    response = create_app(project.config_path, token="").test_client().get("/")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def quiet_tick(project: Project) -> tuple[int, bool]:
    """fullprocess.py as cron runs it: its exit code, and whether the quiet tick decided it
    (the history module, which the full decision imports, never loaded, nor psycopg: the
    tick speaks to the server over pgwire.py)."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", str(PROJECT_DIR / "fullprocess.py")],
        env={**os.environ, "RISK_CONFIG": str(project.config_path)},
        capture_output=True,
        text=True,
    )
    imported = {
        line.rsplit("|", 1)[-1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    }
    return result.returncode, not imported & {"clientrisk.history.database", "psycopg"}


@pytest.fixture
def pipeline(project, postgres_server) -> tuple[Project, str]:
    """A project whose history is on the server, bootstrapped by fullprocess.py; (it, the URL)."""
    url = new_history_database(postgres_server)
    use_history_server(project, url)
    assert fullprocess.main(project.args()) == 0
    return project, url


@pytest.mark.slow
def test_fullprocess_keeps_its_history_on_the_server_and_the_quiet_tick_too(pipeline):
    project, url = pipeline
    assert not (project.root / "ingesteddata" / "history.db").exists()
    assert fullprocess.main(project.args()) == 0  # nothing new, decided in full: the stamp
    assert quiet_tick(project) == (0, True)
    project.write_input("batch3.csv", client_rows(300, seed=21))
    assert quiet_tick(project) == (0, False)  # a new file: decided in full
    with open_history(url) as opened:
        runs = opened.latest_runs()
        batches = opened.batches()
    assert [(run.outcome, run.repeats) for run in runs] == [
        ("no drift", 1),
        ("no new data", 2),
        ("bootstrapped", 1),
    ]
    assert [batch.source for batch in batches] == ["batch1.csv", "batch2.csv", "batch3.csv"]
    stamp = (project.root / ".config.json.quiet").read_text()
    assert not any(secret in stamp for secret in SECRETS)


@pytest.mark.slow
def test_a_second_api_host_shows_the_same_runs_and_call_list(pipeline, tmp_path):
    project, _ = pipeline
    other = api_host(project, tmp_path / "api-host")
    first, second = dashboard(project), dashboard(other)
    assert "bootstrapped" in runs_section(second)
    assert runs_section(second) == runs_section(first)
    calls = re.compile(r'<section id="calls">.*?</section>', re.S)
    assert calls.search(second).group(0) == calls.search(first).group(0)
    # A run on the pipeline host is on the other host's page at its next request.
    project.write_input("batch3.csv", client_rows(300, seed=21))
    assert fullprocess.main(project.args()) == 0
    app = create_app(other.config_path, token="")
    client = app.test_client()
    assert "no drift" in runs_section(client.get("/").get_data(as_text=True))
    health = client.get("/health").get_data(as_text=True)
    for text in (second, health, client.get("/metrics").get_data(as_text=True)):
        assert not any(secret in text for secret in SECRETS)


def newest_run(html: str) -> tuple[int, str]:
    """(how many runs the page lists, the newest one's outcome)."""
    rows = re.findall(r'<span class="badge[^"]*">([^<]+)</span>', runs_section(html))
    return len(rows), rows[0] if rows else ""


@pytest.mark.slow
def test_two_api_hosts_read_the_history_while_a_run_writes(pipeline, tmp_path):
    from test_apicalls import start_gunicorn, wait_for_health

    project, url = pipeline
    hosts = [project, api_host(project, tmp_path / "api-host")]
    servers = [start_gunicorn(host, "--workers", "2") for host in hosts]
    seen = {0: [], 1: []}
    try:
        for server, address in servers:
            wait_for_health(address, server)
        # Enough new rows for the run to take a few seconds.
        project.write_input("batch3.csv", client_rows(20_000, seed=21))
        run = subprocess.Popen(
            [sys.executable, str(PROJECT_DIR / "fullprocess.py"), *project.args()],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        while True:
            finished = run.poll() is not None
            for number, (_, address) in enumerate(servers):
                response = requests.get(address, timeout=30)
                assert response.status_code == 200, response.text[:500]
                seen[number].append(newest_run(response.text))
            if finished:
                break
            time.sleep(0.2)
        assert run.returncode == 0, run.stderr.read()
    finally:
        for server, _ in servers:
            server.terminate()
            server.wait(timeout=20)
    with open_history(url) as opened:
        outcome = opened.latest_runs(1)[0].outcome
    # What a page can show while the run goes on, in the order it happens.
    order = [(1, "bootstrapped"), (2, "running"), (2, outcome)]
    for pages in seen.values():
        # Each page was whole (the runs so far, the newest first), and none went back.
        assert set(pages) <= set(order), pages
        assert pages == sorted(pages, key=order.index), pages
        assert pages[-1] == (2, outcome)
    # Pages were asked while the run wrote: the run started, or still running, on both hosts.
    assert all((2, "running") in pages for pages in seen.values()), seen
    assert "ERROR" not in "".join(server.stdout.read() for server, _ in servers)


def test_the_server_module_offers_what_its_callers_import():
    """Its public names exist, and every name the package takes from it is one of them."""
    names = {}
    exec("from clientrisk.history.postgres import *", names)  # fails for a name that is gone
    taken = set()
    for path in (PROJECT_DIR / "clientrisk").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for group in re.findall(r"from clientrisk\.history\.postgres import ([\w, ]+)", text):
            taken |= {name.strip() for name in group.split(",")}
        taken |= set(re.findall(r"\bpostgres\.(?!py\b)([A-Za-z]\w*)", text))
    assert taken, "nothing imports the server module"
    assert taken <= set(postgres.__all__), sorted(taken - set(postgres.__all__))


def test_an_api_whose_history_server_is_gone_still_serves_and_says_why(deployed):
    url = f"postgresql://risk:s3cret@127.0.0.1:{dbservers.free_port()}/history"
    use_history_server(deployed, url)
    client = create_app(deployed.config_path, token="").test_client()
    page = client.get("/")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "the history database cannot be read" in text
    assert "postgresql://risk:***@127.0.0.1" in text
    health = client.get("/health")
    assert health.status_code == 200
    assert health.get_json()["model_version"] == "v0001"
    assert "s3cret" not in text + health.get_data(as_text=True)


def test_the_quiet_ticks_repeat_on_the_server_holds_only_while_nothing_else_was_recorded(
    postgres_server, tmp_path
):
    from clientrisk.pipeline import quiettick

    url = new_history_database(postgres_server)
    reason = "it's a \\ reason with 'quotes' and a back\\slash"
    record = {"started_at": "2026-05-01T12:00:00Z", "finished_at": "2026-05-01T12:00:00Z"}
    with open_history(url) as opened:
        run = opened.finish_run(None, {**record, "outcome": "no new data", "reason": reason})
        generation = opened.generation()
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"history_db_url": url}))
    shown = postgres.url_without_password(url)
    values = {"history": shown, "config": str(config), "run": run, "generation": generation}
    values.update(outcome="no new data", reason=reason)
    params = quiettick._wire_params(shown)
    assert params["user"] == dbservers.USER
    now = "2026-05-01T12:10:00Z"
    assert quiettick._repeat_on_server(values, params, now, '{"a": "\\\\"}', "2026-01-01")
    with open_history(url) as opened:
        [row] = opened.latest_runs()
        assert (row.repeats, row.last_finished_at, row.reason) == (2, now, reason)
        assert row.record == {"a": "\\"}
        opened.note_fact("changed", "yes")  # something else recorded: no repeat
    assert not quiettick._repeat_on_server(values, params, now, "{}", "2026-01-01")
    with open_history(url) as opened:
        assert opened.latest_runs()[0].repeats == 2


@pytest.mark.parametrize("query", ["", "?connect_timeout=5"])
def test_a_quiet_tick_records_its_repeat_on_the_server_by_either_driver(
    postgres_server, tmp_path, query
):
    from clientrisk.pipeline import quiettick

    url = new_history_database(postgres_server)
    record = {"started_at": "2026-05-01T12:00:00Z", "finished_at": "2099-01-01T00:00:00Z"}
    with open_history(url) as opened:
        run = opened.finish_run(None, {**record, "outcome": "no new data", "reason": "quiet"})
        generation = opened.generation()
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"history_db_url": url + query}))
    values = {
        "history": postgres.url_without_password(url) + query,
        "config": str(config),
        "config_shown": str(config),
        "runlog": str(tmp_path / "fullprocess.jsonl"),
        "run": run,
        "generation": generation,
        "outcome": "no new data",
        "reason": "quiet",
        "overdue": 3600,
    }
    # "" speaks over pgwire.py; a setting it does not speak goes through psycopg.
    assert (quiettick._wire_params(values["history"]) is None) == bool(query)
    assert quiettick._record_repeat(values, time.monotonic()) == 0
    with open_history(url) as opened:
        assert opened.latest_runs()[0].repeats == 2
    line = json.loads((tmp_path / "fullprocess.jsonl").read_text())
    assert (line["run_id"], line["outcome"]) == (run, "no new data")
