"""The top level holds what you run; the machinery is one installable package whose models load
anywhere it is installed, including models pickled before the package existed."""

import pickle
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clientrisk.atomicfiles import sha256_file
from clientrisk.config import PROJECT_DIR
from clientrisk.data.clientcsv import FEATURES
from clientrisk.deployment import modelstore
from clientrisk.report.dependencies import read_requirements
from conftest import run_steps

DATA_DIR = Path(__file__).resolve().parent / "data"
# The design card's files, what else is run or read at the top level, and the data folders.
TOP_LEVEL = {
    "config.json", "ingestion.py", "training.py", "scoring.py", "deployment.py",
    "diagnostics.py", "reporting.py", "app.py", "wsgi.py", "apicalls.py", "fullprocess.py",
    "cronjob.txt", "requirements.txt", "ranking.py", "gunicorn.conf.py", "README.md",
    "pyproject.toml", "requirements-dev.txt", "practiceconfig.json", ".gitignore",
    "practicedata", "sourcedata", "testdata", "ingesteddata", "practicemodels", "models",
    "production_deployment", "logs", "tests", "bench", "scripts", "docs", "clientrisk", ".ci",
}  # fmt: skip
STEP_SCRIPTS = [
    "ingestion.py", "training.py", "scoring.py", "deployment.py", "diagnostics.py",
    "reporting.py", "apicalls.py", "fullprocess.py", "ranking.py", "app.py", "wsgi.py",
]  # fmt: skip


def test_the_locks_pin_every_dependency_with_hashes():
    import tomllib

    direct = tomllib.loads((PROJECT_DIR / "pyproject.toml").read_text())["project"]
    for lock, extra in (
        ("requirements.txt", []),
        ("requirements-dev.txt", direct["optional-dependencies"]["dev"]),
    ):
        text = (PROJECT_DIR / lock).read_text()
        pinned = read_requirements(PROJECT_DIR / lock)
        assert pinned, lock
        assert all(version for _, version in pinned), lock
        names = {name.lower() for name, _ in pinned}
        for requirement in [*direct["dependencies"], *extra]:
            assert re.split(r"[\[~=<>]", requirement)[0].lower() in names, (lock, requirement)
        # Every pinned line is followed by its hashes: pip then checks each download.
        assert text.count("==") == len(pinned)
        assert all(
            "--hash=sha256:" in entry for entry in re.split(r"\n(?=\S)", text) if "==" in entry
        ), lock


def tracked_top_level() -> set[str]:
    listed = subprocess.run(
        ["git", "ls-files"], cwd=PROJECT_DIR, capture_output=True, text=True, check=True
    ).stdout.split()
    return {name.split("/", 1)[0] for name in listed}


def test_the_top_level_holds_only_what_is_run_and_the_data_folders():
    if not (PROJECT_DIR / ".git").exists():
        pytest.skip("not a git checkout")
    assert tracked_top_level() <= TOP_LEVEL, sorted(tracked_top_level() - TOP_LEVEL)


@pytest.mark.parametrize("script", STEP_SCRIPTS)
def test_each_step_script_is_a_thin_command_line(script):
    lines = (PROJECT_DIR / script).read_text().splitlines()
    assert len(lines) <= 120, f"{script} has {len(lines)} lines"


def test_a_model_pickled_by_the_top_level_layout_still_loads_and_predicts():
    path = DATA_DIR / "old_layout_model.pkl"
    model = modelstore.load_model(path, sha256_file(path))
    expected = pd.read_csv(DATA_DIR / "old_layout_predictions.csv")
    probabilities = model.predict_proba(expected[list(FEATURES)])[:, 1]
    np.testing.assert_allclose(probabilities, expected["probability"], rtol=1e-9)
    assert (model.predict(expected[list(FEATURES)]) == expected["prediction"]).all()


def test_a_model_trained_now_names_only_the_package():
    data = (DATA_DIR / "old_layout_model.pkl").read_bytes()
    assert b"clientrisk" not in data  # the fixture really is of the old layout
    model = modelstore.load_model(
        DATA_DIR / "old_layout_model.pkl", sha256_file(DATA_DIR / "old_layout_model.pkl")
    )
    assert b"clientrisk.model.features" in pickle.dumps(model)


LOAD_ELSEWHERE = """
import pickle, sys
import pandas as pd
import clientrisk
assert "site-packages" in clientrisk.__file__, clientrisk.__file__
with open(sys.argv[1], "rb") as handle:
    model = pickle.load(handle)
rows = pd.DataFrame(
    [[40, 600, 12], [2, 900, 30]],
    columns=["lastmonth_activity", "lastyear_activity", "number_of_employees"],
)
print(" ".join(f"{p:.6f}" for p in model.predict_proba(rows)[:, 1]))
"""


@pytest.mark.slow
def test_pip_install_then_the_deployed_model_loads_in_another_folder(project, tmp_path):
    run_steps(project, "ingestion", "training", "scoring", "deployment")
    live = modelstore.current_deployment(project.root / "production_deployment")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    # pip, setuptools and the dependencies are those of this environment (no network needed);
    # only the package itself is installed into the new one.
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    Path(site, "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--quiet",
         str(PROJECT_DIR)],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    loaded = subprocess.run(
        [str(python), "-c", LOAD_ELSEWHERE, str(live.model_path)],
        capture_output=True, text=True, cwd=elsewhere, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr
    model = modelstore.load_model(live.model_path, live.manifest["model_sha256"])
    rows = pd.DataFrame([[40, 600, 12], [2, 900, 30]], columns=list(FEATURES))
    expected = " ".join(f"{p:.6f}" for p in model.predict_proba(rows)[:, 1])
    assert loaded.stdout.strip() == expected
    # What the package reads at run time was installed with it.
    files = subprocess.run(
        [str(python), "-c", "import importlib.resources as r; p = r.files('clientrisk');"
         " print(all((p / f).is_file() for f in ('history/schema.sql', 'api/openapi.json',"
         " 'api/templates/dashboard.html')))"],
        capture_output=True, text=True, cwd=elsewhere,
    )  # fmt: skip
    assert files.stdout.strip() == "True", files.stderr
