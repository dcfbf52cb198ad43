"""Every interrupted run is finished by the next: kill -9 at points across a whole bootstrap,
SIGTERM and SIGINT, leftovers of killed processes, and manual commands during a run."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

import deployment
import fullprocess
from clientrisk.atomicfiles import leftover_owner, process_alive
from clientrisk.config import PROJECT_DIR
from clientrisk.deployment import modelstore
from clientrisk.history.database import open_history
from clientrisk.model import scoring
from conftest import client_rows, run_steps

ENV = {**os.environ, "RISK_API_URL": "http://127.0.0.1:9"}
ENV.pop("RISK_API_TOKEN", None)

# Runs fullprocess.py, counting the writes that matter (renames into place, and the commits of
# the history database, just before they happen); kills itself with SIGKILL at write number
# argv[1], or with 0 prints them all.
KILLER = """
import json, os, signal, sys
from contextlib import contextmanager
sys.path.insert(0, {project!r})
target, config = int(sys.argv[1]), sys.argv[2]
events = []

def event(label):
    events.append(label)
    if len(events) == target:
        os.kill(os.getpid(), signal.SIGKILL)

real_replace, real_rename = os.replace, os.rename

def replace(source, destination, *args, **kwargs):
    event("replace " + os.path.basename(destination))
    return real_replace(source, destination, *args, **kwargs)

def rename(source, destination, *args, **kwargs):
    event("rename " + os.path.basename(destination))
    return real_rename(source, destination, *args, **kwargs)

os.replace, os.rename = replace, rename
from clientrisk.history import database as history
real_transaction = history._transaction

def committer():
    # What commits: the history method, and the function outside database.py that called it.
    frame, inner = sys._getframe(2), None
    while frame and os.path.basename(frame.f_code.co_filename) in ("database.py", "contextlib.py"):
        if os.path.basename(frame.f_code.co_filename) == "database.py":
            if frame.f_code.co_name not in ("_transaction", "_writing", "transaction"):
                inner = inner or frame.f_code.co_name
        frame = frame.f_back
    outer = frame.f_code.co_name if frame else "?"
    return f"{{inner}}/{{outer}}" if inner else outer

@contextmanager
def transaction(db):
    label = "commit " + committer()
    with real_transaction(db):
        yield db
        event(label)

history._transaction = transaction
import fullprocess
code = fullprocess.main(["--config", config])
if target == 0:
    print(json.dumps(events))
sys.exit(code)
"""


def killer(project, target: int) -> subprocess.CompletedProcess:
    script = KILLER.format(project=str(PROJECT_DIR))
    return subprocess.run(
        [sys.executable, "-c", script, str(target), str(project.config_path)],
        cwd=PROJECT_DIR,
        env=ENV,
        capture_output=True,
        text=True,
    )


def run_fullprocess(project) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "fullprocess.py", *project.args()],
        cwd=PROJECT_DIR,
        env=ENV,
        capture_output=True,
        text=True,
    )


@pytest.fixture(scope="module")
def bootstrap_events(tmp_path_factory):
    """The writes of one whole bootstrap of the test project, in order."""
    from conftest import new_project

    project = new_project(tmp_path_factory.mktemp("count") / "project")
    counted = killer(project, 0)
    assert counted.returncode == 0, counted.stderr
    return json.loads(counted.stdout.splitlines()[-1])


# Moments of a bootstrap to kill it at: (the write, which occurrence of it). A commit is named by
# the history method that commits and the function that called it.
RUN_STARTED = ("commit start_run/run_with_history", 1)
BOOTSTRAP_KILL_POINTS = [
    ("commit sync_deployments/mirror_history", 1),  # the run has started
    ("commit ingest_file", 1),  # registering the first batch, stored in its folder already
    ("rename v0001", 1),  # the version into place
    ("replace current", 1),  # the switch
    ("replace deploymenthistory.txt", 1),
    ("commit record_ranking/run", 1),  # diagnostics, keeping the call list in the history
    ("replace summary_report.pdf", 1),
    ("commit record_reports/run", 1),
    ("commit finish_run/_finished", 1),
]


def nth_event(events, label, occurrence):
    seen = 0
    for number, event in enumerate(events, start=1):
        if event == label:
            seen += 1
            if seen == occurrence:
                return number
    raise AssertionError(f"{label} #{occurrence} is not among the writes: {events}")


def leftovers(project) -> list[Path]:
    """Temporary files in the project, and timing copies of dead processes in the temporary
    folder (another process may be timing its own project there right now)."""
    found = [path for path in project.root.rglob("*") if ".tmp-" in path.name]
    for path in Path(tempfile.gettempdir()).glob(".risk-timing.*"):
        owner = leftover_owner(path.name)
        if owner is None or not process_alive(owner):
            found.append(path)
    return found


def assert_whole_and_reported(project):
    deploy_dir = project.root / "production_deployment"
    live = modelstore.current_deployment(deploy_dir)
    modelstore.verify_files(live)
    for name in ("trainedmodel.pkl", "latestscore.txt", "ingestedfiles.txt"):
        assert (deploy_dir / name).read_bytes() == (live.path / name).read_bytes()
    assert modelstore.read_history(deploy_dir)[-1]["to_version"] == live.label
    report = json.loads((project.root / "models" / "diagnostics.json").read_text())
    assert report["model"]["sha256"] == live.manifest["model_sha256"]
    assert (project.root / "models" / "summary_report.pdf").is_file()
    with open_history(project.config.history_path) as history:
        assert history.integrity_problems() == []
        assert history.latest_reports()[0] == live.manifest["model_sha256"]
        assert [batch.source for batch in history.batches()] == ["batch1.csv", "batch2.csv"]
        assert not history.unfinished_runs()
    data = pd.read_csv(project.root / "ingesteddata" / "finaldata.csv")
    assert len(data) == 600


@pytest.mark.slow
@pytest.mark.parametrize(
    ("label", "occurrence"),
    BOOTSTRAP_KILL_POINTS,
    ids=[f"{a} #{b}" for a, b in BOOTSTRAP_KILL_POINTS],
)
def test_a_bootstrap_killed_anywhere_is_completed_by_the_next_run(
    project, bootstrap_events, label, occurrence
):
    point = nth_event(bootstrap_events, label, occurrence)
    killed = killer(project, point)
    assert killed.returncode == -signal.SIGKILL
    deploy_dir = project.root / "production_deployment"
    if (deploy_dir / "current").exists():
        # Whole at every instant: the moment `current` exists, the course's paths resolve.
        modelstore.verify_files(modelstore.current_deployment(deploy_dir))
        assert (deploy_dir / "trainedmodel.pkl").is_file()
    after = run_fullprocess(project)
    assert after.returncode == 0, after.stderr
    assert "Traceback" not in after.stderr
    assert_whole_and_reported(project)
    assert not leftovers(project)
    with open_history(project.config.history_path) as history:
        runs = history.latest_runs()
    started = point > nth_event(bootstrap_events, *RUN_STARTED)
    assert ("interrupted" in [run.outcome for run in runs]) == started
    assert run_fullprocess(project).returncode == 0
    with open_history(project.config.history_path) as history:
        assert history.latest_runs(1)[0].outcome == "no new data"
        assert history.latest_runs(1)[0].reason == "no file in the input folder is new"


@pytest.mark.slow
@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_a_stopped_run_says_so_in_one_line_and_the_next_completes(project, signal_number):
    script = (
        "import os, signal, sys, time\n"
        f"sys.path.insert(0, {str(PROJECT_DIR)!r})\n"
        "import fullprocess\n"
        "from clientrisk.model import training\n"
        "real = training.fit_model\n"
        "def fit(data, *args):\n"
        f"    os.kill(os.getpid(), {int(signal_number)})\n"
        "    time.sleep(5)\n"
        "    return real(data, *args)\n"
        "training.fit_model = fit\n"
        f"sys.exit(fullprocess.main(['--config', {str(project.config_path)!r}]))\n"
    )
    stopped = subprocess.run(
        [sys.executable, "-c", script], cwd=PROJECT_DIR, env=ENV, capture_output=True, text=True
    )
    assert stopped.returncode == 128 + signal_number
    assert "Traceback" not in stopped.stderr
    name = signal.Signals(signal_number).name
    assert f"fullprocess: stopped by {name} during training; the next run completes the work" in (
        stopped.stderr
    )
    with open_history(project.config.history_path) as history:
        last = history.latest_runs(1)[0]
    assert (last.outcome, last.record["exit_code"]) == ("interrupted", 128 + signal_number)
    assert not leftovers(project)
    assert run_fullprocess(project).returncode == 0
    assert_whole_and_reported(project)


def test_leftovers_of_dead_processes_are_removed_and_those_of_living_ones_kept(diagnosed):
    dead = 2**22 + 12345  # above the kernel's largest process id
    folders = [
        diagnosed.root / "ingesteddata",
        diagnosed.root / "ingesteddata" / "batches",
        diagnosed.root / "models",
        diagnosed.root / "production_deployment",
        diagnosed.root / "production_deployment" / "versions",
    ]
    dead_ones = [folder / f".finaldata.abc.tmp-{dead}.csv" for folder in folders]
    for path in dead_ones:
        path.write_text("half")
    (diagnosed.root / "production_deployment" / "versions" / f".v0009.tmp-{dead}").mkdir()
    dead_ones.append(diagnosed.root / "production_deployment" / "versions" / f".v0009.tmp-{dead}")
    scratch = Path(tempfile.gettempdir()) / f".risk-timing.xyz.tmp-{dead}"
    scratch.mkdir(exist_ok=True)
    dead_ones.append(scratch)
    living = diagnosed.root / "models" / f".riskranking.abc.tmp-{os.getpid()}.csv"
    living.write_text("still being written")
    diagnosed.write_input("batch3.csv", client_rows(150, seed=21))
    assert run_fullprocess(diagnosed).returncode == 0
    assert not [path for path in dead_ones if path.exists()]
    assert living.exists()


def drifted_run_with(diagnosed, monkeypatch, during_scoring):
    """Run fullprocess in this process on a drifted batch, calling `during_scoring` between
    training the challenger and comparing it."""
    monkeypatch.setenv("RISK_API_URL", "http://127.0.0.1:9")
    real_scoring = scoring.run

    def scoring_then(config):
        result = real_scoring(config)
        during_scoring()
        return result

    monkeypatch.setattr(scoring, "run", scoring_then)
    diagnosed.write_input("drifted.csv", client_rows(1000, seed=23, drifted=True))
    assert fullprocess.main(diagnosed.args()) == 0
    with open_history(diagnosed.config.history_path) as history:
        return history.latest_runs(1)[0]


def test_a_rollback_during_a_run_is_not_undone(deployed, monkeypatch, capsys):
    deployed.write_input("more.csv", client_rows(200, seed=11))
    run_steps(deployed, "ingestion", "training", "scoring", "deployment", "diagnostics")
    run_steps(deployed, "reporting")
    assert modelstore.current_version(deployed.root / "production_deployment") == 2

    def roll_back():
        assert deployment.main(deployed.args("--rollback", "--reason", "bad model")) == 0

    run = drifted_run_with(deployed, monkeypatch, roll_back)
    assert run.outcome == "live model changed"
    assert "v0001 is live, not v0002 as when this model was judged" in run.reason
    assert modelstore.current_version(deployed.root / "production_deployment") == 1
    # The model the run trained is held back from a plain deployment.
    monkeypatch.undo()
    assert deployment.main(deployed.args()) == 1
    assert "deploy it anyway with --force" in capsys.readouterr().err
    assert deployment.main(deployed.args("--force")) == 0
    assert modelstore.current_version(deployed.root / "production_deployment") == 3


def test_a_challenger_cannot_be_deployed_by_hand_while_it_is_compared(diagnosed, monkeypatch):
    codes = []

    def deploy_by_hand():
        codes.append(deployment.main(diagnosed.args()))

    deploy_dir = diagnosed.root / "production_deployment"
    before = modelstore.read_history(deploy_dir)
    run = drifted_run_with(diagnosed, monkeypatch, deploy_by_hand)
    assert codes == [1]
    assert run.outcome == "redeployed"
    added = modelstore.read_history(deploy_dir)[len(before) :]
    assert [change["reason"].split(";")[0] for change in added] == ["model drift on drifted.csv"]


def test_a_kept_out_challenger_needs_force(diagnosed, monkeypatch, capsys, worse_challengers):
    run = drifted_run_with(diagnosed, monkeypatch, lambda: None)
    assert run.outcome == "challenger kept out"
    assert deployment.main(diagnosed.args()) == 1
    err = capsys.readouterr().err
    assert f"run {run.id} kept this model out" in err
    assert "--force" in err


def test_old_versions_are_removed_but_never_the_live_one_or_its_rollback_target(deployed):
    config = json.loads(deployed.config_path.read_text())
    deployed.config_path.write_text(json.dumps({**config, "keep_versions": 2}))
    deploy_dir = deployed.root / "production_deployment"
    for seed in (11, 12, 13):
        deployed.write_input(f"more{seed}.csv", client_rows(100, seed=seed))
        run_steps(deployed, "ingestion", "training", "scoring", "deployment")
    assert modelstore.list_versions(deploy_dir) == [3, 4]
    assert deployment.main(deployed.args("--rollback")) == 0  # back to v0003
    deployed.write_input("more14.csv", client_rows(100, seed=14))
    run_steps(deployed, "ingestion", "training", "scoring", "deployment")
    # v0005 is live and v0004 among the newest two; v0003, the one --rollback would restore
    # (live when v0005 was deployed), stays too.
    assert modelstore.list_versions(deploy_dir) == [3, 4, 5]
    assert deployment.main(deployed.args("--rollback")) == 0
    assert modelstore.current_version(deploy_dir) == 3


def test_the_run_log_is_rotated(diagnosed, monkeypatch):
    monkeypatch.setattr("clientrisk.pipeline.runlog.RUN_LOG_MAX_BYTES", 2000)
    monkeypatch.setenv("RISK_API_URL", "http://127.0.0.1:9")
    for _ in range(30):
        assert fullprocess.main(diagnosed.args()) == 0
    logs = sorted(path.name for path in (diagnosed.root / "logs").glob("fullprocess.jsonl*"))
    assert logs == [
        "fullprocess.jsonl",
        "fullprocess.jsonl.1",
        "fullprocess.jsonl.2",
        "fullprocess.jsonl.3",
    ]
    assert all(
        path.stat().st_size < 4000 for path in (diagnosed.root / "logs").glob("fullprocess.jsonl*")
    )
    with open_history(diagnosed.config.history_path) as history:
        assert history.latest_runs(1)[0].repeats == 30


def test_the_cron_log_is_rotated_by_a_full_run(diagnosed, monkeypatch):
    monkeypatch.setattr("clientrisk.pipeline.runlog.RUN_LOG_MAX_BYTES", 2000)
    monkeypatch.setenv("RISK_API_URL", "http://127.0.0.1:9")
    cron_log = diagnosed.root / "logs" / "cron.log"
    cron_log.parent.mkdir(exist_ok=True)
    cron_log.write_text("a line cron wrote\n" * 200)
    older = cron_log.read_text()
    assert fullprocess.main(diagnosed.args()) == 0
    assert (diagnosed.root / "logs" / "cron.log.1").read_text() == older
    assert not cron_log.exists()  # cron's shell starts it afresh for the next run
    cron_log.write_text("short\n")
    assert fullprocess.main(diagnosed.args()) == 0
    assert cron_log.read_text() == "short\n"


def test_a_waiting_tick_does_not_sleep_on_a_pipe(diagnosed):
    """A named pipe called *.csv would block a plain open() for ever."""
    os.mkfifo(diagnosed.input_dir / "pipe.csv")
    started = time.monotonic()
    assert run_fullprocess(diagnosed).returncode == 0
    assert time.monotonic() - started < 60


@pytest.fixture(scope="module")
def update_events(diagnosed_template, tmp_path_factory):
    """The writes of one run that finds a drifted batch, retrains and redeploys."""
    from conftest import copy_project

    project = copy_project(diagnosed_template, tmp_path_factory.mktemp("update") / "project")
    project.write_input("drifted.csv", client_rows(1000, seed=23, drifted=True))
    counted = killer(project, 0)
    assert counted.returncode == 0, counted.stderr
    return json.loads(counted.stdout.splitlines()[-1])


# An update run killed while registering the batch it stored, and while writing the reports of
# the model it just deployed.
UPDATE_KILL_POINTS = [("commit ingest_file", 1), ("replace summary_report.pdf", 1)]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("label", "occurrence"), UPDATE_KILL_POINTS, ids=[f"{a} #{b}" for a, b in UPDATE_KILL_POINTS]
)
def test_an_update_killed_is_completed_by_the_next_run(diagnosed, update_events, label, occurrence):
    diagnosed.write_input("drifted.csv", client_rows(1000, seed=23, drifted=True))
    killed = killer(diagnosed, nth_event(update_events, label, occurrence))
    assert killed.returncode == -signal.SIGKILL
    after = run_fullprocess(diagnosed)
    assert after.returncode == 0, after.stderr
    deploy_dir = diagnosed.root / "production_deployment"
    live = modelstore.current_deployment(deploy_dir)
    modelstore.verify_files(live)
    assert live.version == 2
    report = json.loads((diagnosed.root / "models" / "diagnostics.json").read_text())
    assert report["model"]["sha256"] == live.manifest["model_sha256"]
    with open_history(diagnosed.config.history_path) as history:
        batches = history.batches()
        assert [batch.source for batch in batches] == ["batch1.csv", "batch2.csv", "drifted.csv"]
        assert batches[-1].judgement is not None
        assert history.latest_reports()[0] == live.manifest["model_sha256"]
        outcomes = [run.outcome for run in history.latest_runs()]
    assert outcomes[:2] in (["redeployed", "interrupted"], ["no new data", "interrupted"])
    assert not leftovers(diagnosed)


@pytest.mark.slow
def test_an_update_killed_just_after_the_live_switch_is_recorded_by_the_next_run(
    diagnosed, update_events
):
    diagnosed.write_input("drifted.csv", client_rows(1000, seed=23, drifted=True))
    # Killed at the first write after `current` switched to the retrained model.
    killed = killer(diagnosed, nth_event(update_events, "replace current", 1) + 1)
    assert killed.returncode == -signal.SIGKILL
    deploy_dir = diagnosed.root / "production_deployment"
    live = modelstore.current_deployment(deploy_dir)
    assert live.version == 2
    after = run_fullprocess(diagnosed)
    assert after.returncode == 0, after.stderr
    with open_history(diagnosed.config.history_path) as history:
        drifted = history.batches()[-1]
        assert (drifted.source, drifted.judgement) == ("drifted.csv", "trained on by v0002")
        assert history.challenger_verdict(live.manifest["model_sha256"])[0] == "deployed"
        assert [change["to_version"] for change in history.deployments()] == ["v0001", "v0002"]
    assert not leftovers(diagnosed)
