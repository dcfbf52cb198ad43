import json

import numpy as np
import pandas as pd
import pytest

import scoring
from clientrisk.data import takeover
from clientrisk.model.scoring import evaluate_model
from conftest import HEADER, run_steps


class FixedModel:
    """Stands in for a model with known predictions, to check the metrics by hand."""

    def __init__(self, labels, probabilities):
        self.labels = np.array(labels)
        self.probabilities = np.array(probabilities)

    def predict(self, features):
        return self.labels

    def predict_proba(self, features):
        return np.column_stack([1 - self.probabilities, self.probabilities])


def labelled(exited):
    rows = len(exited)
    return pd.DataFrame(
        {
            "corporation": [f"c{i:03d}" for i in range(rows)],
            "lastmonth_activity": [1.0] * rows,
            "lastyear_activity": [12.0] * rows,
            "number_of_employees": [3.0] * rows,
            "exited": exited,
        }
    )


def test_metrics_match_hand_computed_values():
    model = FixedModel([1, 0, 0, 1, 1], [0.9, 0.4, 0.2, 0.6, 0.8])
    metrics = evaluate_model(model, labelled([1, 1, 0, 0, 1]))
    assert metrics["confusion"] == {"tn": 1, "fp": 1, "fn": 1, "tp": 2}
    assert metrics["precision"] == pytest.approx(2 / 3, abs=1e-6)
    assert metrics["recall"] == pytest.approx(2 / 3, abs=1e-6)
    assert metrics["f1"] == pytest.approx(2 / 3, abs=1e-6)
    assert metrics["roc_auc"] == pytest.approx(5 / 6, abs=1e-6)
    assert metrics["rows"] == 5


def test_roc_auc_is_none_when_only_one_class():
    metrics = evaluate_model(FixedModel([0, 1], [0.1, 0.7]), labelled([0, 0]))
    assert metrics["roc_auc"] is None
    assert metrics["f1"] == 0.0


def test_writes_bare_f1_metrics_and_history(project, capsys):
    run_steps(project, "ingestion", "training", "scoring")
    assert "on 300 test rows" in capsys.readouterr().out
    models = project.root / "models"
    score_text = (models / "latestscore.txt").read_text()
    metrics = json.loads((models / "scoremetrics.json").read_text())
    assert float(score_text) == pytest.approx(metrics["f1"], abs=1e-6)
    assert score_text.strip() == f"{metrics['f1']:.6f}"
    assert sum(metrics["confusion"].values()) == metrics["rows"] == 300
    assert set(metrics) >= {"precision", "recall", "roc_auc", "model_sha256", "dataset"}
    run_steps(project, "scoring")
    history = takeover.read_score_history(models / "scorehistory.csv")
    assert len(history) == 2
    assert history[-1]["f1"] == pytest.approx(metrics["f1"])
    assert history[-1]["context"] == "test"


def test_bad_test_rows_are_skipped_with_a_message(deployed, capsys):
    test_file = deployed.root / "testdata" / "testdata.csv"
    with test_file.open("a") as handle:
        handle.write("badx,lots,10,1,0\n")
    run_steps(deployed, "scoring")
    captured = capsys.readouterr()
    assert "testdata.csv:302: lastmonth_activity: 'lots' is not a number" in captured.err
    assert "on 300 test rows" in captured.out


def test_missing_test_data(deployed, capsys):
    (deployed.root / "testdata" / "testdata.csv").unlink()
    assert scoring.main(deployed.args()) == 1
    err = capsys.readouterr().err
    assert "testdata.csv: data file not found" in err
    assert "Traceback" not in err


def test_no_trained_model(project, capsys):
    assert scoring.main(project.args()) == 1
    assert "no trained model; run training.py first" in capsys.readouterr().err


def test_changed_model_file_is_refused(deployed, capsys):
    with (deployed.root / "models" / "trainedmodel.pkl").open("ab") as handle:
        handle.write(b"tampered")
    assert scoring.main(deployed.args()) == 1
    assert "does not match the recorded" in capsys.readouterr().err


def test_course_format_test_data(course_project):
    run_steps(course_project, "ingestion", "training", "scoring")
    metrics = json.loads((course_project.root / "models" / "scoremetrics.json").read_text())
    assert metrics["rows"] == 15


def test_header_only_test_data(deployed, capsys):
    (deployed.root / "testdata" / "testdata.csv").write_text(HEADER)
    assert scoring.main(deployed.args()) == 1
    assert "no data rows" in capsys.readouterr().err


def test_a_damaged_history_line_is_skipped(deployed, caplog):
    history = deployed.root / "models" / "scorehistory.csv"
    with history.open("a") as handle:
        handle.write("yesterday,abc,test,testdata.csv,lots,0.5,,,\n")
    rows = takeover.read_score_history(history)
    assert len(rows) == 1
    assert "scorehistory.csv:3: unreadable score line skipped" in caplog.text
