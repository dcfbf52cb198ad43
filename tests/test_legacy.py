"""Taking over a project that an earlier version ran: its layout had no store and no database."""

import json
import shutil

import pandas as pd
import pytest

import fullprocess
import ingestion
from clientrisk.atomicfiles import sha256_file
from clientrisk.data.clientcsv import COLUMNS
from clientrisk.history.database import History, open_history
from conftest import client_rows, run_steps

OLD_HEADER = (
    "# Files read by ingestion.py, one per line, tab-separated. status: ingested | rejected |"
    " duplicate (same content as another file, rows counted once).\n"
    "file\tsha256\trows_accepted\trows_rejected\tingested_at\tstatus\tnote\n"
)


def old_record_line(path, time, status="ingested", rows=None, note=""):
    rows = len(pd.read_csv(path)) if rows is None else rows
    return f"{path.name}\t{sha256_file(path)}\t{rows}\t0\t{time}\t{status}\t{note}\n"


@pytest.fixture
def old_project(deployed, tmp_path):
    """A project as the earlier version left it.

    batch1 and batch2 were ingested and deployed (v0001); batch3 came later and a run judged it
    (no drift); batch4 was ingested by hand and never judged; batch1 was then archived.
    """
    inputs = deployed.input_dir
    deployed.write_input("batch3.csv", client_rows(120, seed=61))
    deployed.write_input("batch4.csv", client_rows(130, seed=62))
    names = ["batch1.csv", "batch2.csv", "batch3.csv", "batch4.csv"]
    times = [
        "2026-01-01T10:00:00Z",
        "2026-01-01T10:00:01Z",
        "2026-02-01T10:00:00Z",
        "2026-03-01T10:00:00Z",
    ]
    frames = [pd.read_csv(inputs / name) for name in names]
    old_final = pd.concat(frames, ignore_index=True).drop_duplicates()
    ingested = deployed.root / "ingesteddata"
    shutil.rmtree(ingested)
    ingested.mkdir()
    old_final.to_csv(ingested / "finaldata.csv", index=False)
    record = "".join(old_record_line(inputs / n, t) for n, t in zip(names, times, strict=True))
    (ingested / "ingestedfiles.txt").write_text(OLD_HEADER + record)
    deploy_dir = deployed.root / "production_deployment"
    checked = OLD_HEADER.replace("Files read by ingestion.py", "Files fullprocess.py has judged")
    checked += old_record_line(inputs / "batch3.csv", times[2], "no drift")
    (deploy_dir / "checkedfiles.txt").write_text(checked)
    manifest_path = deploy_dir / "versions" / "v0001" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for key in ("through_batch", "trained_by"):
        manifest.pop(key)
    manifest_path.write_text(json.dumps(manifest))
    runs = [
        {
            "started_at": times[0],
            "finished_at": times[0],
            "outcome": "bootstrapped",
            "reason": "r",
            "steps": {"training": 3.5},
        },
        {"started_at": times[2], "finished_at": times[2], "outcome": "no drift", "reason": "r"},
    ]
    (deployed.root / "logs").mkdir(exist_ok=True)
    (deployed.root / "logs" / "fullprocess.jsonl").write_text(
        "".join(json.dumps(run) + "\n" for run in runs)
    )
    archive = tmp_path / "archive"
    archive.mkdir()
    shutil.move(inputs / "batch1.csv", archive / "batch1.csv")
    deployed.old_final = old_final
    return deployed


def test_the_first_ingestion_takes_over_every_row_and_file(old_project, capsys):
    assert ingestion.main(old_project.args()) == 0
    assert "no new file to ingest" in capsys.readouterr().out
    data = pd.read_csv(old_project.root / "ingesteddata" / "finaldata.csv")
    key = list(COLUMNS)
    merged = old_project.old_final.merge(data[key], on=key, how="outer", indicator=True)
    assert (merged["_merge"] == "both").all()
    assert len(data) == len(old_project.old_final)
    with open_history(old_project.config.history_path) as history:
        batches = history.batches()
        files = {entry.name: entry for entry in history.input_files()}
        scores = history.scores()
        runs = history.latest_runs()
    assert [batch.source for batch in batches] == [
        "finaldata.csv (taken over)",
        "batch2.csv",
        "batch3.csv",
        "batch4.csv",
    ]
    assert batches[0].labelled_rows == 300  # batch1's rows, whose file was archived
    assert [batch.judgement is not None for batch in batches] == [True, True, True, False]
    assert batches[3].arrived_at == "2026-03-01T10:00:00Z"
    assert (files["batch1.csv"].batch, files["batch4.csv"].batch) == (1, 4)
    assert len(scores) == 1
    assert [run.outcome for run in runs] == ["no drift", "bootstrapped"]


def test_the_first_run_judges_only_what_was_never_judged(old_project, monkeypatch):
    monkeypatch.setenv("RISK_API_URL", "http://127.0.0.1:9")
    assert fullprocess.main(old_project.args()) == 0
    with open_history(old_project.config.history_path) as history:
        run = history.latest_runs(1)[0]
    assert run.record["new_files"] == ["batch4.csv"]
    assert run.record["model_drift"]["rows"] == 130
    assert run.outcome in {"no drift", "redeployed", "challenger kept out"}
    assert fullprocess.main(old_project.args()) == 0


def test_an_interrupted_take_over_starts_again_without_doubles(old_project, monkeypatch):
    real = History.note_fact

    def fail(self, key, value):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(History, "note_fact", fail)
    assert ingestion.main(old_project.args()) == 1
    monkeypatch.setattr(History, "note_fact", real)
    assert ingestion.main(old_project.args()) == 0
    with open_history(old_project.config.history_path) as history:
        assert len(history.batches()) == 4
        assert len(history.scores()) == 1
    assert len(pd.read_csv(old_project.root / "ingesteddata" / "finaldata.csv")) == len(
        old_project.old_final
    )


def test_a_new_project_has_nothing_to_take_over(project):
    run_steps(project, "ingestion")
    with open_history(project.config.history_path) as history:
        assert history.fact("taken_over").endswith("nothing to take over")
