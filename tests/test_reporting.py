import json
import re

import pytest
from PIL import Image
from pypdf import PdfReader

import reporting
from clientrisk.report.charts import score_history_figure
from clientrisk.report.summary import SECTIONS
from conftest import client_rows, run_steps


@pytest.fixture
def reported(diagnosed):
    run_steps(diagnosed, "reporting")
    return diagnosed


def pdf_text(path) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(path).pages)


def test_pdf_has_every_section(diagnosed, capsys):
    assert reporting.main(diagnosed.args()) == 0
    assert "summary_report.pdf (4 pages)" in capsys.readouterr().out
    models = diagnosed.root / "models"
    path = models / "summary_report.pdf"
    assert path.read_bytes().startswith(b"%PDF-")
    text = pdf_text(path)
    for section in SECTIONS:
        assert section in text
    report = json.loads((models / "diagnostics.json").read_text())
    assert "v0001" in text
    assert report["ranking"]["top"][0]["corporation"] in text
    metrics = json.loads((models / "scoremetrics.json").read_text())
    assert f"{metrics['f1']:.3f}" in text


def test_confusion_matrix_is_a_real_image(reported):
    with Image.open(reported.root / "models" / "confusionmatrix.png") as image:
        assert image.format == "PNG"
        assert image.width > 400
        assert image.height > 300


def test_confusion_counts_match_the_scores(reported):
    metrics = json.loads((reported.root / "models" / "scoremetrics.json").read_text())
    text = pdf_text(reported.root / "models" / "summary_report.pdf")
    assert f"{metrics['precision']:.3f}" in text
    assert f"{metrics['rows']:,}" in text


def damage(project, what):
    if what == "missing test file":
        (project.root / "testdata" / "testdata.csv").unlink()
    elif what == "no diagnostics":
        (project.root / "models" / "diagnostics.json").unlink()
    elif what == "no model":
        (project.root / "production_deployment" / "current").unlink()
    elif what == "diagnostics of another model":
        project.write_input("more.csv", client_rows(200, seed=11))
        run_steps(project, "ingestion", "training", "scoring", "deployment")


@pytest.mark.parametrize(
    ("what", "message"),
    [
        ("missing test file", "testdata.csv: data file not found"),
        ("no diagnostics", "no diagnostics yet; run diagnostics.py first"),
        ("no model", "no model is deployed"),
        ("diagnostics of another model", "v0002 is live; run diagnostics.py again"),
    ],
)
def test_bad_input_keeps_the_earlier_report(reported, what, message, capsys):
    models = reported.root / "models"
    before = {
        name: (models / name).read_bytes() for name in ("summary_report.pdf", "confusionmatrix.png")
    }
    damage(reported, what)
    capsys.readouterr()
    assert reporting.main(reported.args()) == 1
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert {name: (models / name).read_bytes() for name in before} == before


def test_score_history_draws_each_model_apart_and_fits_its_time_axis():
    from matplotlib import dates as mdates

    def score(minute, sha, f1):
        return {"scored_at": f"2026-11-21T10:{minute:02d}:00Z", "model_sha256": sha, "f1": f1}

    history = [
        score(0, "a", 0.55),
        score(10, "a", 0.52),
        score(20, "b", 0.30),  # retrained, kept out
        score(30, "a", 0.20),
        score(40, "c", 0.48),
    ]
    deployments = [
        {"time": "2026-11-21T10:00:00Z", "model_sha256": "a", "to_version": "v0001"},
        {"time": "2026-11-21T10:40:00Z", "model_sha256": "c", "to_version": "v0002"},
    ]
    figure = score_history_figure(history, deployments)
    axes = figure.axes[0]
    series = {line.get_label(): line for line in axes.get_lines()}
    assert list(series["v0001"].get_ydata()) == [
        0.55,
        0.52,
        0.20,
    ]  # the kept-out score is not on it
    assert list(series["v0002"].get_ydata()) == [0.48]
    kept_out = series["retrained, kept out"]
    assert list(kept_out.get_ydata()) == [0.30]
    assert kept_out.get_linestyle() == "None"
    start, end = (mdates.num2date(limit) for limit in axes.get_xlim())
    assert (end - start).total_seconds() < 2 * 3600  # 40 minutes of history, not years


def test_page_one_gives_every_reason_in_points_and_marks_an_uncertain_risk(diagnosed):
    far = client_rows(5, seed=12).drop(columns=["exited"])
    far.loc[0, ["corporation", "lastmonth_activity", "lastyear_activity"]] = ["farc", 1.0, 5000.0]
    diagnosed.write_input("roster.csv", far)
    run_steps(diagnosed, "ingestion", "diagnostics", "reporting")
    first_page = PdfReader(diagnosed.root / "models" / "summary_report.pdf").pages[0]
    text = " ".join(first_page.extract_text().split())
    assert "1 of them have figures outside the range the model has seen" in text
    assert "Current clients: the clients on the latest roster (roster.csv, batch 3)" in text
    assert text.count(": risk ") >= 5
    assert "(+0." not in text


def test_page_one_says_which_are_this_weeks_calls(diagnosed):
    config = json.loads(diagnosed.config_path.read_text())
    diagnosed.config_path.write_text(json.dumps({**config, "calls_per_week": 5}))
    run_steps(diagnosed, "diagnostics", "reporting")
    first = page_text(diagnosed.root / "models" / "summary_report.pdf", 0)
    assert "The first 5 are this week's calls (above the line in the table)." in first


def page_text(path, page: int) -> str:
    return " ".join(PdfReader(path).pages[page].extract_text().split())


def test_after_a_drift_the_report_says_why_and_shows_the_newest_rows(diagnosed):
    import fullprocess

    diagnosed.write_input("drifted.csv", client_rows(1000, seed=23, drifted=True))
    assert fullprocess.main(diagnosed.args()) == 0
    path = diagnosed.root / "models" / "summary_report.pdf"
    first = page_text(path, 0)
    assert "The market changed on " in first
    assert "the list below comes from a model retrained on the 700 newest clients" in first
    assert "The test clients are of an earlier market: they cannot tell" in first
    assert "What arrives: The newest clients differ from those the model learnt from:" in first
    assert "top 20: 0%" not in first
    second = " ".join(page_text(path, page) for page in (1, 2))
    assert "Test file Newest rows" in second
    assert "Newest rows: 300 held-out rows of batches 3-3" in second
    assert "testdata.csv no longer resembles the incoming data" in second
    # Page 1 holds the whole call list with its footnote: no page of a few lines after it.
    assert len(PdfReader(path).pages) == 4
    assert "The full list, every current client" in first
    # What changed names a few clients, not the whole top.
    assert re.search(r"New in the top 20: [^.]* and \d+ more\.", first)


def test_page_one_gives_the_precision_of_the_top_smallest_first(diagnosed):
    path = diagnosed.root / "models" / "summary_report.pdf"
    first = page_text(path, 0)
    assert first.index("top 20:") < first.index("top 50:") < first.index("top 100:")
    assert "()" not in first


def test_a_test_file_too_small_for_a_top_gives_no_empty_brackets(diagnosed):
    client_rows(15, seed=3).to_csv(diagnosed.root / "testdata" / "testdata.csv", index=False)
    run_steps(diagnosed, "scoring", "diagnostics", "reporting")
    first = page_text(diagnosed.root / "models" / "summary_report.pdf", 0)
    assert "()" not in first
    assert "The 15 test clients are too few to say how often the top of the list is right." in first


def test_score_history_with_one_point_is_readable():
    from matplotlib import dates as mdates

    history = [{"scored_at": "2026-12-02T10:00:00Z", "model_sha256": "a", "f1": 0.466}]
    deployments = [{"time": "2026-12-02T10:00:00Z", "model_sha256": "a", "to_version": "v0001"}]
    figure = score_history_figure(history, deployments)
    axes = figure.axes[0]
    figure.canvas.draw()
    ticks = [mdates.num2date(tick) for tick in axes.get_xticks()]
    assert 3 <= len(ticks) <= 7
    assert (ticks[1] - ticks[0]).total_seconds() >= 5 * 60  # not a tick every few seconds
    assert [text.get_text() for text in axes.texts] == ["0.47"]  # the point says its value
