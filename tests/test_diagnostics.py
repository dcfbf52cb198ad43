import json
import math
import shutil
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pandas as pd
import pytest

import diagnostics
from clientrisk.atomicfiles import sha256_file
from clientrisk.data.clientcsv import FEATURES
from clientrisk.deployment import modelstore
from clientrisk.errors import DataError
from clientrisk.history.database import open_history
from clientrisk.model import scoring
from clientrisk.monitoring import drift
from clientrisk.report.dependencies import dependency_status, latest_versions
from clientrisk.report.diagnostics import (
    missing_percentages,
    model_predictions,
    summary_statistics,
    time_steps,
)
from conftest import CLOSED_INDEX_URL, client_rows, run_steps


def test_summary_statistics_by_hand():
    frame = pd.DataFrame(
        {"a": [1.0, 2.0, 3.0, 10.0], "b": [5.0, np.nan, 5.0, 5.0], "c": list("wxyz")}
    )
    stats = summary_statistics(frame)
    assert set(stats) == {"a", "b"}
    assert stats["a"]["mean"] == 4.0
    assert stats["a"]["median"] == 2.5
    assert stats["a"]["std"] == pytest.approx(math.sqrt(50 / 3), abs=1e-6)
    assert (stats["a"]["min"], stats["a"]["max"], stats["a"]["count"]) == (1.0, 10.0, 4)
    assert (stats["a"]["q25"], stats["a"]["q75"]) == (1.75, 4.75)
    assert (stats["b"]["mean"], stats["b"]["std"], stats["b"]["count"]) == (5.0, 0.0, 3)


def test_missing_percentages_by_hand():
    frame = pd.DataFrame(
        {"a": [1.0, np.nan, 3.0, np.nan], "b": [1, 2, 3, 4], "c": [None, "x", "y", "z"]}
    )
    assert missing_percentages(frame) == {"a": 50.0, "b": 0.0, "c": 25.0}


def test_population_stability_index_by_hand():
    reference = pd.Series([1.0, 2.0, 3.0, 4.0])
    # Two bins split at the reference median (2.5): shares 0.5/0.5 against 0.75/0.25.
    current = pd.Series([1.0, 1.0, 1.0, 4.0])
    expected = 0.25 * math.log(1.5) + 0.25 * math.log(2)
    assert drift.population_stability_index(reference, current, bins=2) == pytest.approx(expected)
    assert drift.population_stability_index(reference, reference, bins=2) == pytest.approx(0)


def test_missing_values_count_in_the_psi():
    reference = pd.Series([1.0, 2.0, 3.0, 4.0] * 25)
    current = pd.Series([1.0, 2.0, np.nan, np.nan] * 25)
    assert drift.population_stability_index(reference, current) > drift.PSI_MAJOR


def test_drift_is_flagged_on_a_shifted_sample():
    reference = client_rows(3000, seed=1)
    shifted = client_rows(1000, seed=2, drifted=True)
    results = {item["feature"]: item for item in drift.feature_drift(reference, shifted, FEATURES)}
    assert results["lastyear_activity"]["ks_drift"]
    assert results["lastyear_activity"]["ks_adjusted_pvalue"] < drift.KS_ALPHA
    assert results["lastyear_activity"]["psi"] > 0.05


@pytest.mark.parametrize("rows", [20, 1000])
def test_no_drift_on_a_sample_from_the_same_process(rows):
    reference = client_rows(3000, seed=1)
    same = client_rows(rows, seed=5)
    results = drift.feature_drift(reference, same, FEATURES)
    assert not any(item["ks_drift"] for item in results)
    assert all(item["ks_adjusted_pvalue"] >= item["ks_pvalue"] for item in results)


def test_model_predictions_in_input_order(deployed):
    rows = pd.DataFrame(
        {
            "lastmonth_activity": [0.0, 250.0, np.nan],
            "lastyear_activity": [3000.0, 3000.0, 800.0],
            "number_of_employees": [40.0, 40.0, 12.0],
        }
    )
    predictions = model_predictions(rows, deployed.config)
    assert list(predictions.columns) == ["prediction", "probability"]
    assert len(predictions) == 3
    assert predictions["probability"][0] > predictions["probability"][1]
    assert set(predictions["prediction"]) <= {0, 1}
    reversed_rows = model_predictions(rows.iloc[::-1], deployed.config)
    np.testing.assert_allclose(reversed_rows["probability"], predictions["probability"][::-1])


def test_model_predictions_from_a_csv_path(deployed):
    path = deployed.root / "testdata" / "testdata.csv"
    predictions = model_predictions(path, deployed.config)
    assert list(predictions["corporation"]) == list(pd.read_csv(path)["corporation"])


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            pd.DataFrame({"lastmonth_activity": [1.0], "lastyear_activity": [2.0]}),
            "number_of_employees",
        ),
        (
            pd.DataFrame(
                {
                    "lastmonth_activity": [1, -4],
                    "lastyear_activity": [2, 3],
                    "number_of_employees": [1, 1],
                }
            ),
            "record 2: lastmonth_activity: -4 is negative",
        ),
    ],
    ids=["missing column", "bad value"],
)
def test_model_predictions_refuse_bad_input(deployed, rows, message):
    with pytest.raises(DataError, match=message):
        model_predictions(rows, deployed.config)


def test_model_predictions_need_a_deployed_model(project):
    rows = pd.DataFrame({name: [1.0] for name in FEATURES})
    with pytest.raises(modelstore.DeploymentError, match="no model is deployed"):
        model_predictions(rows, project.config)


def test_timing_leaves_the_project_untouched(deployed):
    with open_history(deployed.config.history_path) as history:
        batches = history.batches()
    before = {path: sha256_file(path) for path in deployed.root.rglob("*") if path.is_file()}
    timings = time_steps(deployed.config, repeats=2, batches=batches)
    for step in ("ingestion", "training"):
        assert len(timings[step]["runs"]) == 2
        assert timings[step]["median_seconds"] > 0
    after = {path: sha256_file(path) for path in deployed.root.rglob("*") if path.is_file()}
    assert after == before


class FakeIndex(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"info": {"version": "99.0"}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_index():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeIndex)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/pypi"
    server.shutdown()


@pytest.fixture
def silent_index():
    """A server that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/pypi"
    listener.close()


def test_dependencies_are_unknown_without_network(tmp_path):
    started = time.monotonic()
    latest = latest_versions(["pandas", "flask"], CLOSED_INDEX_URL, 2, tmp_path / "c.json")
    assert latest == {"pandas": None, "flask": None}
    assert time.monotonic() - started < 2


def test_a_silent_index_cannot_hang_the_check(tmp_path, silent_index):
    started = time.monotonic()
    latest = latest_versions(["pandas", "flask"], silent_index, 1, tmp_path / "c.json")
    assert latest == {"pandas": None, "flask": None}
    assert time.monotonic() - started < 1.5


def test_latest_versions_are_cached_for_a_day(tmp_path, fake_index):
    cache = tmp_path / "cache.json"
    assert latest_versions(["pandas"], fake_index, 2, cache) == {"pandas": "99.0"}
    # Asked again with the index gone, the answer comes from the cache.
    assert latest_versions(["pandas"], CLOSED_INDEX_URL, 2, cache) == {"pandas": "99.0"}
    stale = json.loads(cache.read_text())
    stale["pandas"]["checked_at"] = "2020-01-01T00:00:00Z"
    cache.write_text(json.dumps(stale))
    assert latest_versions(["pandas"], CLOSED_INDEX_URL, 2, cache) == {"pandas": None}


def test_dependency_table(deployed, tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# pins\npandas==1.0.0\nnot-a-real-package-xyz==1.0\n")
    table = dependency_status(deployed.config, requirements)
    pandas_row, missing_row = table
    assert pandas_row["pinned"] == "1.0.0"
    assert pandas_row["installed"] == pd.__version__
    assert pandas_row["status"] == "unknown"
    assert missing_row["status"] == "not installed"


def test_outdated_when_the_index_knows_a_newer_version(deployed, tmp_path, fake_index):
    config = deployed.config
    config.settings["package_index_url"] = fake_index
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("pandas\n")
    (row,) = dependency_status(config, requirements)
    assert (row["latest"], row["status"]) == ("99.0", "outdated")


def test_diagnostics_writes_every_result(diagnosed):
    models = diagnosed.root / "models"
    report = json.loads((models / "diagnostics.json").read_text())
    assert report["model"]["version"] == "v0001"
    assert set(report["summary_statistics"]) == {*FEATURES, "exited"}
    assert set(report["missing_percent"]) == {"corporation", *FEATURES, "exited"}
    # The steps were run by hand: no timed run to report, and nothing was run again to time it.
    assert report["timings"] == {}
    assert {row["package"] for row in report["dependencies"]} >= {"pandas", "scikit-learn"}
    # Nothing arrived after the model's training: its training data would be compared with itself.
    assert not report["drift"]["available"]
    assert report["drift"]["reason"] == "no batch arrived after v0001 was trained"
    assert len(report["ranking"]["top"]) == 20
    ranking = pd.read_csv(models / "riskranking.csv")
    assert ranking["corporation"].is_unique
    stored = pd.read_csv(diagnosed.root / "ingesteddata" / "finaldata.csv")
    assert len(ranking) == report["ranking"]["clients"] == (stored["exited"] == 0).sum()
    assert ranking["probability"].is_monotonic_decreasing
    assert list(ranking.columns[:7]) == [
        "rank",
        "corporation",
        "probability",
        "predicted_exit",
        "reason_1",
        "reason_2",
        "reason_3",
    ]


def test_drift_compares_files_that_arrived_after_training(diagnosed, capsys):
    diagnosed.write_input("drifted.csv", client_rows(400, seed=8, drifted=True))
    run_steps(diagnosed, "ingestion", "diagnostics")
    report = json.loads((diagnosed.root / "models" / "diagnostics.json").read_text())
    assert report["drift"]["compared"] == "batches since training: 3 (drifted.csv)"
    assert "lastyear_activity" in report["drift"]["drifted"]
    assert "data drift: " in capsys.readouterr().out


def test_cli_summary(diagnosed, capsys):
    run_steps(diagnosed, "diagnostics")
    out = capsys.readouterr().out
    for text in ("model v0001", "summary statistics", "missing values", "timings", "most at risk"):
        assert text in out


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("nothing ingested", "no ingested data; run ingestion.py first"),
        ("stored batch changed", "outcomes.arrow: changed after it was stored"),
        ("no model", "no model is deployed"),
    ],
)
def test_bad_input_is_one_clear_error_and_keeps_earlier_results(diagnosed, damage, message, capsys):
    models = diagnosed.root / "models"
    before = {
        name: (models / name).read_bytes() for name in ("diagnostics.json", "riskranking.csv")
    }
    ingested = diagnosed.root / "ingesteddata"
    if damage == "nothing ingested":
        shutil.rmtree(ingested)
    elif damage == "stored batch changed":
        stored = ingested / "batches" / "000002" / "outcomes.arrow"
        stored.write_bytes(stored.read_bytes()[:-10] + b"0123456789")
    else:
        (diagnosed.root / "production_deployment" / "current").unlink()
    assert diagnostics.main(diagnosed.args()) == 1
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert {name: (models / name).read_bytes() for name in before} == before


def test_labels_agree_with_the_model_itself(deployed):
    model, _ = modelstore.load_deployed_model(deployed.config.deploy_dir)
    rows = pd.read_csv(deployed.root / "testdata" / "testdata.csv")
    predictions = scoring.predict(model, rows)
    assert list(predictions["prediction"]) == list(model.predict(rows[list(FEATURES)]))


def test_a_changed_training_sample_is_refused(diagnosed, capsys):
    diagnosed.write_input("more.csv", client_rows(100, seed=9))
    run_steps(diagnosed, "ingestion")
    sample = diagnosed.root / "production_deployment" / "versions" / "v0001" / "trainingsample.csv"
    sample.write_text("lastmonth_activity,lastyear_activity,number_of_employees\n1,2,3\n")
    assert diagnostics.main(diagnosed.args()) == 1
    err = capsys.readouterr().err
    assert "trainingsample.csv: SHA-256" in err
    assert "Traceback" not in err


def test_timing_on_a_copy_is_an_explicit_option(diagnosed):
    import diagnostics

    assert diagnostics.main(diagnosed.args("--time-on-copy", "--timing-repeats", "2")) == 0
    report = json.loads((diagnosed.root / "models" / "diagnostics.json").read_text())
    assert set(report["timings"]) == {"ingestion", "training"}
    for timing in report["timings"].values():
        assert len(timing["runs"]) == 2
        assert timing["measured"] == "2 run(s) on a copy"


def test_quality_before_any_new_batch_is_the_test_file_alone(diagnosed):
    quality = json.loads((diagnosed.root / "models" / "diagnostics.json").read_text())["quality"]
    assert quality["test_file"]["file"] == "testdata.csv"
    assert quality["test_file"]["rows"] == 300
    assert quality["newest"] is None
    assert quality["story"] is None
    # The test file comes from the same market as the newest batch.
    assert quality["test_file_drift"]["resembles"]


def test_after_a_drift_quality_is_shown_on_the_newest_held_out_rows(diagnosed, capsys):
    import fullprocess

    diagnosed.write_input("drifted.csv", client_rows(1000, seed=23, drifted=True))
    assert fullprocess.main(diagnosed.args()) == 0
    report = json.loads((diagnosed.root / "models" / "diagnostics.json").read_text())
    quality = report["quality"]
    newest = quality["newest"]
    assert newest["rows"] == 300
    assert newest["dataset"] == "300 held-out rows of batches 3-3"
    assert newest["measured"].startswith("held out when run")
    assert 0 < newest["roc_auc"] <= 1
    # The old market's test file no longer resembles what arrives, and the report says so.
    resemblance = quality["test_file_drift"]
    assert not resemblance["resembles"]
    assert resemblance["drifted"]
    assert resemblance["compared"] == "testdata.csv against batch 3 (drifted.csv, 1,000 rows)"
    assert quality["story"].startswith("The market changed on ")
    assert quality["story"].endswith(
        "(batch 3); the list below comes from a model retrained on the 700 newest clients."
    )
    capsys.readouterr()
    run_steps(diagnosed, "diagnostics")
    out = capsys.readouterr().out
    assert "on 300 held-out rows of batches 3-3" in out
    assert "testdata.csv no longer resembles the newest batch" in out


def test_a_batch_judged_after_deployment_gives_the_newest_quality(diagnosed):
    diagnosed.write_input("later.csv", client_rows(400, seed=31))
    import fullprocess

    assert fullprocess.main(diagnosed.args()) == 0
    quality = json.loads((diagnosed.root / "models" / "diagnostics.json").read_text())["quality"]
    assert quality["newest"]["dataset"] == "new batch later.csv"
    assert quality["newest"]["rows"] == 400


@pytest.mark.parametrize(
    ("before", "now", "psi_drift", "words"),
    [
        (43.0, 12.0, True, "last month's activity is much lower (median 12 against 43)"),
        (42.0, 60.0, False, "last month's activity is somewhat higher (median 60 against 42)"),
        (43.0, 43.0, True, "last month's activity is spread differently"),
    ],
)
def test_drift_in_words_says_which_way_and_how_much(before, now, psi_drift, words):
    from clientrisk.report.quality import drift_in_words

    found = {
        "available": True,
        "drifted": ["lastmonth_activity"],
        "features": [
            {
                "feature": "lastmonth_activity",
                "reference_median": before,
                "current_median": now,
                "psi_drift": psi_drift,
            },
            {"feature": "lastyear_activity", "reference_median": 1.0, "current_median": 9.0},
        ],
    }
    assert drift_in_words(found) == (
        f"The newest clients differ from those the model learnt from: {words}."
    )


def test_no_drift_in_no_words():
    from clientrisk.report.quality import drift_in_words

    assert drift_in_words({"available": True, "drifted": [], "features": []}) is None
    assert drift_in_words({"available": False, "reason": "nothing new"}) is None


def test_the_activity_trend_in_words_has_no_log_medians():
    from clientrisk.report.quality import drift_in_words

    found = {
        "available": True,
        "drifted": ["activity_trend"],
        "features": [
            {
                "feature": "activity_trend",
                "reference_median": -0.027,
                "current_median": -0.22,
                "psi_drift": True,
            }
        ],
    }
    assert drift_in_words(found) == (
        "The newest clients differ from those the model learnt from: last month's activity"
        " against the year's average is much lower."
    )
