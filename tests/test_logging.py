"""`-v` shows what each step read, decided and wrote; the libraries' own chatter stays quiet."""

import logging
import re
import time
import warnings

import pytest

import deployment
import diagnostics
import fullprocess
import ingestion
import reporting
import scoring
import training
from clientrisk.cli import configure_logging
from conftest import client_rows

STEPS = {
    "ingestion": (ingestion.main, "finaldata.csv: "),
    "training": (training.main, "chose {"),
    "scoring": (scoring.main, "testdata.csv: {"),
    "deployment": (deployment.main, "live: v0001"),
    "diagnostics": (diagnostics.main, "drift: "),
    "reporting": (reporting.main, "report on v0001"),
    "fullprocess": (fullprocess.main, "new files: batch3.csv"),
}
LIBRARY_NOISE = ("findfont", "font_manager", "matplotlib", "PIL", "STREAM", "urllib3")


@pytest.mark.parametrize("step", list(STEPS))
def test_verbose_shows_the_steps_own_detail_and_no_library_noise(
    diagnosed, step, capsys, monkeypatch
):
    monkeypatch.setenv("RISK_API_URL", "http://127.0.0.1:9")
    main, expected = STEPS[step]
    diagnosed.write_input("batch3.csv", client_rows(120, seed=71))
    assert main(diagnosed.args("-v")) == 0
    err = capsys.readouterr().err
    assert " DEBUG " in err
    assert expected in err
    for noise in LIBRARY_NOISE:
        assert noise not in err


def test_log_lines_carry_their_time_zone(project, capsys, monkeypatch):
    monkeypatch.setenv("TZ", "EST5")  # five hours behind UTC all year
    time.tzset()
    try:
        assert ingestion.main(project.args("-v")) == 0
    finally:
        monkeypatch.undo()
        time.tzset()
    first = capsys.readouterr().err.splitlines()[0]
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d -0500 DEBUG ", first), first


def test_a_library_warning_is_one_log_line(capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        configure_logging()
        warnings.warn_explicit(
            "Ill-conditioned matrix (rcond=1e-20):\nresult may not be accurate.",
            UserWarning,
            "solver.py",
            12,
        )
    logging.captureWarnings(False)
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert re.match(
        r"\S+ \S+ [+-]\d{4} WARNING solver.py:12: UserWarning: Ill-conditioned matrix"
        r" \(rcond=1e-20\): result may not be accurate.$",
        err.strip(),
    ), err
