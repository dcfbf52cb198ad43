"""`-v` shows what each step read, decided and wrote; the libraries' own chatter stays quiet."""

import pytest

import deployment
import diagnostics
import fullprocess
import ingestion
import reporting
import scoring
import training
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
