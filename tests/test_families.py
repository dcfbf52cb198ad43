"""Whichever model family is live, the call list, its reasons, /prediction, the report and the
pickled model work, and the report says which family it is and why."""

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clientrisk.api.app import create_app
from clientrisk.calllist import ranking
from clientrisk.config import REPORT_FILE
from clientrisk.data.clientcsv import FEATURES
from clientrisk.deployment import modelstore
from clientrisk.model import scoring, training
from clientrisk.report import diagnostics
from clientrisk.report.summary import _family_words
from tests.conftest import new_project, run_steps

WHY = "chosen by hand for this test"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module", params=["interactions", "boosting"])
def live_family(request, tmp_path_factory):
    project = new_project(tmp_path_factory.mktemp(request.param))
    run_steps(project, "ingestion")
    training.run(project.config, family=request.param, why=WHY)
    scoring.run(project.config)
    run_steps(project, "deployment")
    return request.param, project


def test_the_deployed_model_is_of_the_family_and_says_why(live_family):
    family, project = live_family
    model, deployment = modelstore.load_deployed_model(project.config.deploy_dir)
    assert deployment.manifest["family"] == family
    assert deployment.manifest["why"] == WHY
    # Its pickle loads in a fresh interpreter (with the package importable, as where the API
    # runs) and predicts as the loaded model does.
    rows = pd.read_csv(project.root / "testdata" / "testdata.csv")
    expected = scoring.predict(model, rows)["probability"].to_numpy()
    script = (
        "import pickle, sys, pandas as pd;"
        f"model = pickle.load(open({str(deployment.model_path)!r}, 'rb'));"
        f"rows = pd.read_csv({str(project.root / 'testdata' / 'testdata.csv')!r});"
        f"rows = rows[{list(FEATURES)!r}];"
        "print(','.join(repr(float(p)) for p in model.predict_proba(rows)[:, 1]))"
    )
    output = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=REPO
    )
    again = np.array([float(value) for value in output.stdout.strip().split(",")])
    np.testing.assert_allclose(again, expected, rtol=1e-9)
    assert pickle.loads(pickle.dumps(model)) is not None


def test_the_call_list_ranks_and_gives_reasons(live_family):
    _, project = live_family
    summary = ranking.run(project.config).report
    probabilities = [entry["probability"] for entry in summary["top"]]
    assert probabilities == sorted(probabilities, reverse=True)
    assert 0 < probabilities[-1] <= probabilities[0] < 1
    assert any(entry["reasons"] for entry in summary["top"])
    listed = pd.read_csv(project.config.model_dir / ranking.RANKING_FILE)
    assert len(listed) == summary["clients"] > 0


def test_prediction_answers_with_the_live_family(live_family):
    _, project = live_family
    client = create_app(project.config_path, token="").test_client()
    records = [
        {"corporation": "quiet", "lastmonth_activity": 0, "lastyear_activity": 900,
         "number_of_employees": 8},
        {"corporation": "busy", "lastmonth_activity": 120, "lastyear_activity": 1300,
         "number_of_employees": 40},
    ]  # fmt: skip
    response = client.post("/prediction", json={"records": records})
    assert response.status_code == 200
    body = response.get_json()
    assert body["rows"] == 2
    assert all(0 < value < 1 for value in body["probabilities"])


def test_the_report_names_the_family_and_why(live_family):
    family, project = live_family
    report = diagnostics.run(project.config).report
    assert report["model"]["family"] == family
    run_steps(project, "reporting")
    pdf = project.config.model_dir / REPORT_FILE
    assert pdf.stat().st_size > 0
    words = _family_words(modelstore.load_deployed_model(project.config.deploy_dir)[1].manifest)
    assert training.FAMILIES[family] in words
    assert WHY in words
