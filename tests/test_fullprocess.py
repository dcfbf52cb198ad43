import json
import os
import subprocess
import sys
from contextlib import ExitStack

import numpy as np
import pytest

import fullprocess
import generate_data
import ingestion
from clientrisk.atomicfiles import exclusive_lock
from clientrisk.config import PROJECT_DIR
from clientrisk.deployment import modelstore
from clientrisk.history.database import open_history
from clientrisk.pipeline.fullprocess import EXIT_BUSY
from conftest import client_rows, keep_writing, make_project, run_steps


@pytest.fixture(autouse=True)
def no_api(monkeypatch):
    """No API runs during these tests: the API calls must find a closed port."""
    monkeypatch.setenv("RISK_API_URL", "http://127.0.0.1:9")
    monkeypatch.delenv("RISK_API_TOKEN", raising=False)


def run_records(project) -> list[dict]:
    path = project.root / "logs" / "fullprocess.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def live(project):
    return modelstore.current_version(project.root / "production_deployment")


def run(project) -> dict:
    assert fullprocess.main(project.args()) == 0
    return run_records(project)[-1]


def test_bootstrap_from_nothing(project, capsys):
    record = run(project)
    assert record["outcome"] == "bootstrapped"
    assert live(project) == 1
    models = project.root / "models"
    for name in (
        "riskranking.csv",
        "diagnostics.json",
        "summary_report.pdf",
        "confusionmatrix.png",
    ):
        assert (models / name).is_file(), name
    assert set(record["steps"]) == {
        "ingestion",
        "training",
        "scoring",
        "deployment",
        "diagnostics",
        "reporting",
        "apicalls",
    }
    assert record["api"].startswith("not reached")
    assert record["started_at"] <= record["finished_at"]
    # Diagnostics report the run's own step timings: nothing is trained again to time it.
    timings = json.loads((models / "diagnostics.json").read_text())["timings"]
    for step in ("ingestion", "training", "scoring"):
        assert timings[step]["runs"] == [record["steps"][step]]
    err = capsys.readouterr().err
    assert "bootstrapped: nothing was deployed; deployed v0001" in err
    assert "API calls" in err  # recorded, and the run still succeeds


def test_no_new_data(diagnosed, capsys):
    record = run(diagnosed)
    assert record["outcome"] == "no new data"
    assert record["reason"] == "no file in the input folder is new"
    assert record["steps"] == {}
    assert live(diagnosed) == 1
    assert "no new data" in capsys.readouterr().err


def test_a_quiet_tick_catches_up_reports_behind_the_live_model(deployed):
    record = run(deployed)  # deployed by hand, never diagnosed
    assert record["outcome"] == "no new data"
    assert "reports were behind the live model" in record["reason"]
    report = json.loads((deployed.root / "models" / "diagnostics.json").read_text())
    assert report["model"]["version"] == "v0001"
    assert run(deployed)["reason"] == "no file in the input folder is new"


def test_a_quiet_tick_imports_nothing_heavy(diagnosed):
    script = (
        "import sys, fullprocess\n"
        f"code = fullprocess.main(['--config', {str(diagnosed.config_path)!r}])\n"
        "heavy = ['pandas', 'pyarrow', 'numpy', 'sklearn', 'scipy', 'matplotlib', 'reportlab',"
        " 'flask', 'requests', 'clientrisk.data.takeover', 'clientrisk.monitoring.judging',"
        " 'clientrisk.monitoring.retraining', 'clientrisk.model.training']\n"
        "print(code, sorted(name for name in heavy if name in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=PROJECT_DIR, capture_output=True, text=True
    )
    assert result.stdout.strip() == "0 []", result.stderr
    assert run_records(diagnosed)[-1]["outcome"] == "no new data"


def cron_tick(project) -> tuple[int, str, bool]:
    """Run fullprocess.py as cron does (no options, config from RISK_CONFIG): exit code, log
    lines, and whether the tick was decided without the full decision (logging never loaded)."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", str(PROJECT_DIR / "fullprocess.py")],
        env={**os.environ, "RISK_CONFIG": str(project.config_path)},
        capture_output=True,
        text=True,
    )
    imported = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()]
    log = "\n".join(line for line in result.stderr.splitlines() if "import time:" not in line)
    return result.returncode, log, "logging" not in imported


def quiet_row(project):
    with open_history(project.root / "ingesteddata" / "history.db") as history:
        return history.latest_runs(1)[0]


def test_an_unchanged_quiet_tick_is_recorded_as_a_repeat_at_the_cost_of_a_start(diagnosed):
    assert run(diagnosed)["outcome"] == "no new data"  # decided in full: leaves the stamp
    before = quiet_row(diagnosed)
    code, log, quick = cron_tick(diagnosed)
    assert (code, quick) == (0, True)
    assert "INFO no new data: no file in the input folder is new" in log
    after = quiet_row(diagnosed)
    assert (after.id, after.repeats) == (before.id, before.repeats + 1)
    assert after.record["reason"] == "no file in the input folder is new"
    records = run_records(diagnosed)
    assert records[-1].keys() == records[-2].keys()
    assert records[-1]["run_id"] == before.id


def test_an_unchanged_quiet_tick_imports_only_the_quiet_tick_of_the_package(diagnosed):
    assert run(diagnosed)["outcome"] == "no new data"
    result = subprocess.run(
        [sys.executable, "-X", "importtime", str(PROJECT_DIR / "fullprocess.py")],
        env={**os.environ, "RISK_CONFIG": str(diagnosed.config_path)},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    imported = {
        line.rsplit("|", 1)[-1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    ours = sorted(name for name in imported if name.split(".")[0] == "clientrisk")
    assert ours == ["clientrisk", "clientrisk.pipeline", "clientrisk.pipeline.quiettick"]
    assert not imported & {"json", "logging", "pathlib", "argparse"}


def _add_input(project):
    project.write_input("batch3.csv", client_rows(300, seed=21))


def _rewrite_config(project):
    text = project.config_path.read_text()
    os.utime(project.config_path, ns=(1, 1))
    project.config_path.write_text(text)


def _note_in_history(project):
    with open_history(project.root / "ingesteddata" / "history.db") as history:
        history.note_fact("note", "changed by hand")


def _remove_report(project):
    (project.root / "models" / "summary_report.pdf").unlink()


def _damage_stamp(project):
    stamp = project.root / ".config.json.quiet"
    stamp.write_text(stamp.read_text().replace("\ngeneration\t", "\ngeneration\tnot a number"))


@pytest.mark.parametrize(
    ("change", "outcome"),
    [
        (_add_input, "no drift"),
        (_rewrite_config, "no new data"),
        (_note_in_history, "no new data"),
        (_remove_report, "no new data"),
        (_damage_stamp, "no new data"),
    ],
)
def test_any_change_since_the_last_quiet_tick_is_decided_in_full(diagnosed, change, outcome):
    run(diagnosed)  # quiet: leaves the stamp for the next tick
    change(diagnosed)
    code, _, quick = cron_tick(diagnosed)
    assert (code, quick) == (0, False)
    assert run_records(diagnosed)[-1]["outcome"] == outcome


def test_a_quiet_tick_while_a_run_holds_the_lock_is_recorded_as_busy(diagnosed):
    run(diagnosed)
    with exclusive_lock(diagnosed.root / "logs" / "fullprocess.lock"):
        code, _, quick = cron_tick(diagnosed)
    assert (code, quick) == (EXIT_BUSY, False)
    assert run_records(diagnosed)[-1]["outcome"] == "busy"
    code, _, quick = cron_tick(diagnosed)  # the busy record came between: decided in full
    assert (code, quick, run_records(diagnosed)[-1]["outcome"]) == (0, False, "no new data")


def test_new_data_without_drift(diagnosed):
    diagnosed.write_input("batch3.csv", client_rows(300, seed=21))
    record = run(diagnosed)
    assert record["outcome"] == "no drift"
    assert record["new_files"] == ["batch3.csv"]
    assert record["model_drift"]["verdict"] == "no drift"
    assert live(diagnosed) == 1
    final_data = (diagnosed.root / "ingesteddata" / "finaldata.csv").read_text()
    assert len(final_data.splitlines()) == 1 + 900
    # Judged once: the next tick has nothing to do.
    assert run(diagnosed)["outcome"] == "no new data"


def test_small_batches_wait_for_more_and_are_pooled(diagnosed):
    diagnosed.write_input("tiny.csv", client_rows(15, seed=22))
    record = run(diagnosed)
    assert record["outcome"] == "insufficient data"
    assert record["model_drift"]["verdict"] == "insufficient data"
    assert record["reason"].startswith("insufficient data (15 of 100 rows so far)")
    assert record["data_drift"]["verdict"] in {"drift", "no drift"}  # a verdict at any size
    assert live(diagnosed) == 1
    # Nothing new: the waiting batch is not judged again by itself.
    assert run(diagnosed)["outcome"] == "no new data"
    diagnosed.write_input("more.csv", client_rows(40, seed=24))
    assert run(diagnosed)["reason"].startswith("insufficient data (55 of 100 rows so far)")
    diagnosed.write_input("enough.csv", client_rows(60, seed=25))
    record = run(diagnosed)
    assert record["model_drift"]["rows"] == 115
    assert record["batches"] == [3, 4, 5]
    assert record["outcome"] in {"no drift", "redeployed"}


def test_a_drifted_batch_is_retrained_and_redeployed(diagnosed):
    diagnosed.write_input("drifted.csv", client_rows(1000, seed=23, drifted=True))
    record = run(diagnosed)
    assert record["outcome"] == "redeployed"
    assert record["model_drift"]["verdict"] == "drift"
    assert record["model_drift"]["method"] == "calibrated"
    assert record["model_drift"]["score"] < record["model_drift"]["threshold"]
    assert "lastyear_activity" in record["data_drift"]["drifted"]
    paired = record["comparison"]["paired_log_loss"]
    assert paired["rows"] == 300
    assert paired["verdict"] == "better"
    assert paired["challenger_log_loss"] < paired["champion_log_loss"]
    # A lasting change: the challenger learnt from the newest batch only.
    assert record["window"]["chosen"]["from_batch"] == 3
    assert live(diagnosed) == 2
    history = modelstore.read_history(diagnosed.root / "production_deployment")
    assert history[-1]["reason"].startswith("model drift on drifted.csv")
    metadata = json.loads((diagnosed.root / "models" / "trainedmodel.json").read_text())
    assert (metadata["held_out_rows"], metadata["training_rows"]) == (300, 700)
    manifest = modelstore.current_deployment(diagnosed.root / "production_deployment").manifest
    # The drift check's reference: out of fold on every training row, not the 300 held out.
    assert manifest["check_reference"]["rows"] == 700
    assert manifest["check_reference"]["dataset"] == "out-of-fold predictions on 700 training rows"
    report = json.loads((diagnosed.root / "models" / "diagnostics.json").read_text())
    assert report["model"]["version"] == "v0002"
    # The report shows the batch that triggered the retrain against the previous model.
    assert report["drift"]["compared"].startswith("batches 3, which made run")
    assert report["drift"]["reference"] == "training sample of v0001"
    assert "lastyear_activity" in report["drift"]["drifted"]
    assert run(diagnosed)["outcome"] == "no new data"


def test_a_drift_too_small_to_hold_out_is_compared_out_of_fold(diagnosed):
    """200 drifted rows: 60 to hold out, fewer than min_comparison_rows, so the retrained
    recipe is judged out of fold on all 200, and the model learns from every one of them."""
    diagnosed.write_input("drifted1.csv", client_rows(200, seed=26, drifted=True))
    first = run(diagnosed)
    assert first["model_drift"]["verdict"] == "drift"
    assert first["outcome"] == "redeployed"
    assert first["comparison"]["method"].startswith("out of fold on all 200 newest rows")
    assert first["comparison"]["paired_log_loss"]["verdict"] == "better"
    assert live(diagnosed) == 2
    metadata = json.loads((diagnosed.root / "models" / "trainedmodel.json").read_text())
    assert metadata["held_out_rows"] == 0
    assert metadata["why"].endswith(
        "on 200 newest rows out of fold (log loss"
        f" {first['window']['family_log_loss'][metadata['family']]:.4f})"
    )


def test_a_drift_with_too_few_of_an_outcome_waits_for_the_next_batches_of_it(diagnosed):
    rows = client_rows(200, seed=26, drifted=True)
    rows["exited"] = 0
    rows.loc[rows.index[0], "exited"] = 1
    diagnosed.write_input("drifted1.csv", rows)
    first = run(diagnosed)
    assert first["model_drift"]["verdict"] == "drift"
    assert first["outcome"] == "too few rows to compare"
    assert "too few of an outcome to compare out of fold" in first["reason"]
    assert live(diagnosed) == 1


def test_a_worse_challenger_is_kept_out(diagnosed, worse_challengers):
    diagnosed.write_input("drifted.csv", client_rows(1000, seed=23, drifted=True))
    record = run(diagnosed)
    assert record["outcome"] == "challenger kept out"
    paired = record["comparison"]["paired_log_loss"]
    assert paired["verdict"] == "worse"
    assert "significantly worse; v0001 stays live" in record["reason"]
    assert live(diagnosed) == 1
    assert run(diagnosed)["outcome"] == "no new data"


def test_a_harmless_shift_of_the_inputs_is_not_model_drift(diagnosed):
    bigger = generate_data.MARKETS["bigger"]
    rng = np.random.default_rng(30)
    batch = generate_data.simulate_clients(rng, generate_data.client_codes(rng, 500), market=bigger)
    diagnosed.write_input("bigger.csv", batch)
    record = run(diagnosed)
    assert record["model_drift"]["verdict"] == "no drift"
    assert "number_of_employees" in record["data_drift"]["drifted"]  # the inputs did move
    assert record["outcome"] == "no drift"
    assert live(diagnosed) == 1


def test_as_much_new_data_as_the_model_learnt_from_retrains_it(diagnosed):
    diagnosed.write_input("more.csv", client_rows(700, seed=32))
    record = run(diagnosed)
    assert record["model_drift"]["verdict"] == "no drift"
    assert record["reason"].startswith(
        "new data: 700 rows with an outcome arrived since v0001 was trained on 600"
    )
    assert record["outcome"] in {"redeployed", "challenger kept out"}
    assert record["newest"] == {"batches": [3], "rows": 700}


def test_a_model_weighed_by_age_counts_the_rows_its_weights_amount_to(diagnosed):
    """A model that learnt from 600 rows, weighed down by age to as many as 250, is due to learn
    from the 300 that arrived since; unweighted, it is not."""
    from clientrisk.monitoring import judging

    diagnosed.write_input("more.csv", client_rows(300, seed=33))
    ingestion.main(diagnosed.args())
    config = diagnosed.config
    _, deployment = modelstore.load_deployed_model(config.deploy_dir)
    weighted = deployment._replace(
        manifest={
            **deployment.manifest,
            "weighting": {"half_life_rows": 100, "effective_rows": 250.4},
        },
    )
    with open_history(config.history_path) as history:
        assert judging.growth_due(config, history, deployment) is None
        due = judging.growth_due(config, history, weighted)
    assert due.startswith("300 rows with an outcome arrived since v0001 was trained on 250")
    assert "(by their age weights)" in due


def test_a_drifted_batch_never_enters_the_history_checks_baseline(diagnosed, worse_challengers):
    from clientrisk.monitoring import judging

    config = json.loads(diagnosed.config_path.read_text())
    diagnosed.config_path.write_text(json.dumps({**config, "drift_check": "parametric"}))
    diagnosed.write_input("drifted.csv", client_rows(1000, seed=23, drifted=True))
    record = run(diagnosed)
    assert (record["model_drift"]["verdict"], record["outcome"]) == ("drift", "challenger kept out")
    deployment = modelstore.current_deployment(diagnosed.root / "production_deployment")
    with open_history(diagnosed.config.history_path) as history:
        scores = history.scores(deployment.manifest["model_sha256"])
        assert [score["verdict"] for score in scores] == [None, "drift"]
        assert judging.past_scores(history, deployment, "another.csv") == [scores[0]["f1"]]


def test_the_courses_sequence_waits_for_more_rows_with_reports_for_the_live_model(tmp_path):
    """Two practice files deployed by hand, then two source files of 11 and 15 rows arrive."""
    root = tmp_path / "course"
    practice = {
        "dataset1.csv": client_rows(120, seed=41),
        "dataset2.csv": client_rows(130, seed=42),
    }
    project = make_project(root, practice, client_rows(200, seed=43))
    run_steps(project, "ingestion", "training", "scoring", "deployment")
    (root / "practicedata").mkdir()
    for path in project.input_dir.iterdir():
        path.rename(root / "practicedata" / path.name)
    project.write_input("dataset3.csv", client_rows(11, seed=44))
    project.write_input("dataset4.csv", client_rows(15, seed=45))
    record = run(project)
    assert record["outcome"] == "insufficient data"
    assert record["reason"].startswith("insufficient data (26 of 100 rows so far)")
    report = json.loads((root / "models" / "diagnostics.json").read_text())
    assert report["model"]["version"] == "v0001"
    assert (root / "models" / "summary_report.pdf").is_file()
    assert run(project)["outcome"] == "no new data"


@pytest.mark.parametrize("check", ["calibrated", "raw"])
def test_the_courses_own_small_data_ends_with_a_retrained_redeployed_model(tmp_path, check):
    """26 practice rows deployed by hand, then 26 more: too few for any test, so every row is
    learnt from and the retrained model deployed, with the reason said."""
    root = tmp_path / "course"
    practice = {
        "dataset1.csv": client_rows(11, seed=51),
        "dataset2.csv": client_rows(15, seed=52),
    }
    for frame in practice.values():
        frame.loc[frame.index[:3], "exited"] = [1, 0, 1]
    project = make_project(root, practice, client_rows(200, seed=53))
    if check != "calibrated":
        config = json.loads(project.config_path.read_text())
        project.config_path.write_text(json.dumps({**config, "drift_check": check}))
    run_steps(project, "ingestion", "training", "scoring", "deployment")
    (root / "practicedata").mkdir()
    for path in project.input_dir.iterdir():
        path.rename(root / "practicedata" / path.name)
    project.write_input("dataset3.csv", client_rows(11, seed=54))
    project.write_input("dataset4.csv", client_rows(15, seed=55))
    record = run(project)
    assert record["outcome"] == "redeployed"
    expected = "52 rows with an outcome in all, fewer than min_comparison_rows (100)"
    assert expected in record["reason"]
    assert live(project) == 2
    metadata = json.loads((root / "models" / "trainedmodel.json").read_text())
    assert metadata["training_rows"] == 52
    assert run(project)["outcome"] == "no new data"


def test_data_drift_alone_retrains_when_configured(diagnosed):
    config = json.loads(diagnosed.config_path.read_text())
    config.update(retrain_on_data_drift=True, drift_check="raw", min_batch_rows=50)
    diagnosed.config_path.write_text(json.dumps(config))
    shifted = client_rows(400, seed=24)
    shifted["lastyear_activity"] = shifted["lastyear_activity"] * 3
    diagnosed.write_input("shifted.csv", shifted)
    record = run(diagnosed)
    assert "lastyear_activity" in record["data_drift"]["drifted"]
    assert record["outcome"] in {"redeployed", "challenger kept out"}


@pytest.mark.parametrize("inputs", ["none", "still being written"])
def test_nothing_to_bootstrap_from_yet_waits_quietly(project, inputs, capsys):
    for path in project.input_dir.iterdir():
        if inputs == "none":
            path.unlink()
    if inputs == "still being written":
        config = json.loads(project.config_path.read_text())
        project.config_path.write_text(json.dumps({**config, "settle_seconds": 0.5}))
        with ExitStack() as writing:
            for path in sorted(project.input_dir.iterdir()):
                writing.enter_context(keep_writing(path))
            record = run(project)
    else:
        record = run(project)
    assert record["outcome"] == "no new data"
    assert record["reason"].startswith("nothing is deployed and no input file is ready yet: ")
    expected = "no CSV file" if inputs == "none" else "batch1.csv: still being written"
    assert expected in record["reason"]
    assert live(project) is None
    assert "Traceback" not in capsys.readouterr().err


def test_a_run_after_the_input_files_were_archived(diagnosed, tmp_path):
    """Teams move processed files out of the input folder; nothing may depend on them."""
    for path in diagnosed.input_dir.iterdir():
        path.rename(tmp_path / path.name)
    diagnosed.write_input("drifted.csv", client_rows(1000, seed=23, drifted=True))
    record = run(diagnosed)
    assert record["outcome"] == "redeployed"
    metadata = json.loads((diagnosed.root / "models" / "trainedmodel.json").read_text())
    assert metadata["training_rows"] == 1000 - 300  # the newest batch, 30 % held out
    report = json.loads((diagnosed.root / "models" / "diagnostics.json").read_text())
    assert report["model"]["version"] == "v0002"
    assert report["data"]["rows"] == 1600


def test_two_runs_at_once(deployed, capsys):
    with exclusive_lock(deployed.root / "logs" / "fullprocess.lock"):
        assert fullprocess.main(deployed.args()) == EXIT_BUSY == 75
    assert "another fullprocess.py run is in progress" in capsys.readouterr().err
    assert run_records(deployed)[-1]["outcome"] == "busy"
    assert fullprocess.main(deployed.args()) == 0


def test_a_failed_run_is_recorded_and_exits_nonzero(deployed, capsys):
    deployed.write_input("batch3.csv", client_rows(300, seed=21))
    (deployed.root / "testdata" / "testdata.csv").unlink()
    assert fullprocess.main(deployed.args()) == 1
    record = run_records(deployed)[-1]
    assert record["outcome"] == "failed"
    assert "testdata.csv: data file not found" in record["reason"]
    assert "Traceback" not in capsys.readouterr().err
    assert live(deployed) == 1


def test_bad_config(tmp_path, capsys):
    assert fullprocess.main(["--config", str(tmp_path / "none.json")]) == 2
    assert "config file not found" in capsys.readouterr().err


KILL_POINTS = {
    # point: (patched callable, condition on its arguments, version live right after); the
    # bootstrap's own kill points are in test_interruptions.py.
    "switching the live link": ("os.replace", "str(args[1]).endswith('current')", 1),
    "writing the history": ("os.replace", "str(args[1]).endswith('deploymenthistory.txt')", 2),
}


@pytest.mark.slow
@pytest.mark.parametrize("point", KILL_POINTS, ids=list(KILL_POINTS))
def test_kill_9_mid_deployment_leaves_a_whole_deployment(diagnosed, point):
    target, condition, version_after = KILL_POINTS[point]
    module, name = target.split(".")
    script = f"""
import os, signal, sys, {module}
real = {module}.{name}
def dying(*args, **kwargs):
    if {condition}:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*args, **kwargs)
{module}.{name} = dying
import fullprocess
sys.exit(fullprocess.main(["--config", {str(diagnosed.config_path)!r}]))
"""
    diagnosed.write_input("drifted.csv", client_rows(1000, seed=23, drifted=True))
    env = {**os.environ, "RISK_API_URL": "http://127.0.0.1:9"}
    killed = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_DIR, env=env)
    assert killed.returncode == -9
    deploy_dir = diagnosed.root / "production_deployment"
    assert live(diagnosed) == version_after
    modelstore.verify_files(modelstore.current_deployment(deploy_dir))
    # The next run is not blocked by the dead one's lock, and completes.
    after = subprocess.run(
        [sys.executable, "fullprocess.py", *diagnosed.args()], cwd=PROJECT_DIR, env=env
    )
    assert after.returncode == 0
    record = run_records(diagnosed)[-1]
    if version_after == 1:
        assert record["outcome"] == "redeployed"
    else:
        assert record["outcome"] == "no new data"
        assert "reports were behind the live model" in record["reason"]
    live_deployment = modelstore.current_deployment(deploy_dir)
    modelstore.verify_files(live_deployment)
    history = modelstore.read_history(deploy_dir)
    assert history[-1]["to_version"] == live_deployment.label
    report = json.loads((diagnosed.root / "models" / "diagnostics.json").read_text())
    assert report["model"]["version"] == live_deployment.label
    assert not [path for path in (deploy_dir / "versions").iterdir() if ".tmp-" in path.name]


def pdf_text(project) -> str:
    from pypdf import PdfReader

    pages = PdfReader(project.root / "models" / "summary_report.pdf").pages
    return " ".join(" ".join(page.extract_text() for page in pages).split())


def test_after_a_batch_without_drift_the_reports_describe_every_stored_row(diagnosed):
    diagnosed.write_input("batch3.csv", client_rows(300, seed=21))
    assert run(diagnosed)["outcome"] == "no drift"
    report = json.loads((diagnosed.root / "models" / "diagnostics.json").read_text())
    assert report["data"]["through_batch"] == 3
    assert report["data"]["rows"] == 900
    assert report["summary_statistics"]["exited"]["count"] == 900
    with open_history(diagnosed.config.history_path) as history:
        assert history.latest_reports()[1] == 3
    assert "over the data through batch 3" in pdf_text(diagnosed)
    assert run(diagnosed)["reason"] == "no file in the input folder is new"


@pytest.mark.slow
def test_a_roster_run_killed_while_writing_the_pdf_is_reported_by_the_next_run(diagnosed):
    diagnosed.write_input("roster.csv", client_rows(400, seed=51).drop(columns=["exited"]))
    script = f"""
import os, signal, sys
real = os.replace
def dying(source, destination, *args, **kwargs):
    if str(destination).endswith("summary_report.pdf"):
        os.kill(os.getpid(), signal.SIGKILL)
    return real(source, destination, *args, **kwargs)
os.replace = dying
import fullprocess
sys.exit(fullprocess.main(["--config", {str(diagnosed.config_path)!r}]))
"""
    env = {**os.environ, "RISK_API_URL": "http://127.0.0.1:9"}
    killed = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_DIR, env=env)
    assert killed.returncode == -9
    assert "through batch 2" in pdf_text(diagnosed)  # the PDF left behind
    after = subprocess.run(
        [sys.executable, "fullprocess.py", *diagnosed.args()], cwd=PROJECT_DIR, env=env
    )
    assert after.returncode == 0
    record = run_records(diagnosed)[-1]
    assert record["outcome"] == "no new data"
    assert "reports were behind the live model or the stored data" in record["reason"]
    assert "over the data through batch 3" in pdf_text(diagnosed)
    report = json.loads((diagnosed.root / "models" / "diagnostics.json").read_text())
    assert report["data"]["through_batch"] == 3
    with open_history(diagnosed.config.history_path) as history:
        assert history.latest_reports()[1] == 3
        assert history.latest_ranking()[1] == 3
    assert run(diagnosed)["reason"] == "no file in the input folder is new"


def test_a_held_write_lock_on_the_history_gives_up_cleanly_and_is_retried(
    diagnosed, monkeypatch, capsys
):
    import sqlite3

    from clientrisk.history import database

    monkeypatch.setattr(database, "BUSY_TIMEOUT_SECONDS", 1)
    diagnosed.write_input("batch3.csv", client_rows(300, seed=21))
    holder = sqlite3.connect(diagnosed.config.history_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process writing, and never finishing
    try:
        assert fullprocess.main(diagnosed.args()) == EXIT_BUSY
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "another process has held a write lock on the history database for 1 s" in err
    assert run_records(diagnosed)[-1]["outcome"] == "busy"
    record = run(diagnosed)
    assert record["new_files"] == ["batch3.csv"]
    assert record["outcome"] == "no drift"


def test_a_run_that_cannot_open_the_history_leaves_its_line(diagnosed, capsys):
    history_path = diagnosed.config.history_path
    for leftover in history_path.parent.glob(history_path.name + "-*"):
        leftover.unlink()
    history_path.write_bytes(b"not a database" * 100)
    diagnosed.write_input("batch3.csv", client_rows(300, seed=21))
    assert fullprocess.main(diagnosed.args()) == 1
    assert "Traceback" not in capsys.readouterr().err
    record = run_records(diagnosed)[-1]
    assert record["outcome"] == "failed"
    assert str(history_path) in record["reason"]


def test_batches_a_model_deployed_by_hand_was_trained_on_are_judged_by_the_next_run(deployed):
    deployed.write_input("more.csv", client_rows(200, seed=11))
    run_steps(deployed, "ingestion", "training", "scoring", "deployment")
    assert fullprocess.main(deployed.args()) == 0
    with open_history(deployed.config.history_path) as history:
        more = history.batches()[-1]
    assert (more.source, more.judgement) == ("more.csv", "trained on by v0002")


def _settle_within_the_run(project, seconds: float = 1) -> None:
    config = json.loads(project.config_path.read_text())
    project.config_path.write_text(json.dumps({**config, "settle_seconds": seconds}))


def test_files_copied_in_just_before_the_first_run_are_read_by_it(project, capsys):
    """As right after `git clone`: every input file is seconds old."""
    _settle_within_the_run(project)
    for path in project.input_dir.iterdir():
        os.utime(path, None)
    record = run(project)
    assert record["outcome"] == "bootstrapped"
    assert live(project) == 1
    assert "still being written; waiting" in capsys.readouterr().err


def test_a_file_copied_in_just_before_a_run_is_judged_by_it(diagnosed, monkeypatch):
    monkeypatch.setenv("RISK_API_URL", "http://127.0.0.1:9")
    _settle_within_the_run(diagnosed)
    diagnosed.write_input("batch3.csv", client_rows(300, seed=21))
    record = run(diagnosed)
    assert record["new_files"] == ["batch3.csv"]
    assert record["outcome"] != "no new data"


@pytest.mark.parametrize("market", ["usual", "bigger"])
def test_a_roster_gets_a_data_drift_verdict_before_any_outcome(diagnosed, market):
    """A roster has no outcome to judge the model on, but its figures are compared with what the
    model learnt from, recorded and said: larger clients drift, the usual ones do not."""
    rng = np.random.default_rng(44)
    roster = generate_data.simulate_clients(
        rng, generate_data.client_codes(rng, 800), market=generate_data.MARKETS[market]
    ).drop(columns=["exited"])
    diagnosed.write_input("roster.csv", roster)
    record = run(diagnosed)
    assert record["outcome"] == "nothing to judge"
    verdict = record["data_drift"]
    assert verdict["rows"] == 800
    with open_history(diagnosed.config.history_path) as history:
        (check,) = [item for item in history.drift_checks(limit=5) if item["kind"] == "data"]
    if market == "bigger":
        assert "number_of_employees" in verdict["drifted"]
        assert check["verdict"] == "drift"
        assert "features drifted on 800 current-client rows (" in record["reason"]
    else:
        assert check["verdict"] == "no drift"
        assert record["reason"].endswith("; no feature drift on 800 current-client rows")
