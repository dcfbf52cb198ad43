"""Fixtures: a whole small project in a temporary folder, with data from the shipped generator."""

from __future__ import annotations

import json
import os
import shutil
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import generate_data
from clientrisk.config import Config, load_config

TESTS_DIR = Path(__file__).resolve().parent
COURSE_FILE = TESTS_DIR / "data" / "course_format.csv"
CLOSED_INDEX_URL = "http://127.0.0.1:9/pypi"
HEADER = "corporation,lastmonth_activity,lastyear_activity,number_of_employees,exited\n"


def client_rows(rows: int, seed: int, drifted: bool = False) -> pd.DataFrame:
    """Clients from the shipped data's process (codes distinct within one call)."""
    rng = np.random.default_rng(seed)
    return generate_data.simulate_clients(rng, generate_data.client_codes(rng, rows), drifted)


@dataclass
class Project:
    root: Path

    @property
    def config_path(self) -> Path:
        return self.root / "config.json"

    @property
    def config(self) -> Config:
        return load_config(self.config_path)

    @property
    def input_dir(self) -> Path:
        return self.root / "sourcedata"

    def write_input(self, name: str, content: str | bytes | pd.DataFrame) -> Path:
        path = self.input_dir / name
        if isinstance(content, pd.DataFrame):
            content.to_csv(path, index=False)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        return path

    def args(self, *extra: str) -> list[str]:
        return ["--config", str(self.config_path), *extra]


def make_project(root: Path, inputs: dict[str, pd.DataFrame], test_rows: pd.DataFrame) -> Project:
    for folder in ("sourcedata", "testdata"):
        (root / folder).mkdir(parents=True)
    config = {
        "input_folder_path": "sourcedata",
        "output_folder_path": "ingesteddata",
        "test_data_path": "testdata",
        "output_model_path": "models",
        "prod_deployment_path": "production_deployment",
        # No network in tests: a refused loopback port answers at once.
        "package_index_url": CLOSED_INDEX_URL,
        "dependency_timeout_seconds": 2,
        "timing_repeats": 1,
        # Test files are written just before the steps run: read them at once.
        "settle_seconds": 0,
    }
    (root / "config.json").write_text(json.dumps(config))
    project = Project(root)
    for name, frame in inputs.items():
        project.write_input(name, frame)
    test_rows.to_csv(root / "testdata" / "testdata.csv", index=False)
    return project


def new_project(root: Path) -> Project:
    """Two 300-client input files and a 300-row test set."""
    inputs = {"batch1.csv": client_rows(300, seed=1), "batch2.csv": client_rows(300, seed=2)}
    return make_project(root, inputs, client_rows(300, seed=3))


@pytest.fixture
def project(tmp_path) -> Project:
    """A project with data and nothing run yet."""
    return new_project(tmp_path / "project")


@pytest.fixture(scope="session")
def deployed_template(tmp_path_factory) -> Project:
    template = new_project(tmp_path_factory.mktemp("template") / "project")
    run_steps(template, *ALL_STEPS)
    return template


@pytest.fixture
def deployed(deployed_template, tmp_path) -> Project:
    """A project that has been ingested, trained, scored and deployed (as v0001)."""
    return copy_project(deployed_template, tmp_path / "project")


@pytest.fixture(scope="session")
def diagnosed_template(deployed_template, tmp_path_factory) -> Project:
    template = copy_project(deployed_template, tmp_path_factory.mktemp("diagnosed") / "project")
    run_steps(template, "diagnostics", "reporting")
    return template


@pytest.fixture
def diagnosed(diagnosed_template, tmp_path) -> Project:
    """A deployed project whose diagnostics and reports have been made."""
    return copy_project(diagnosed_template, tmp_path / "project")


@pytest.fixture
def worse_challengers(monkeypatch):
    """Every model trained from now on learns the outcomes inverted: a challenger that is worse."""
    from clientrisk.model import training

    real_fit = training.fit_model

    def fit_on_inverted_labels(data, *args):
        return real_fit(data.assign(exited=1 - data["exited"]), *args)

    monkeypatch.setattr(training, "fit_model", fit_on_inverted_labels)


def copy_project(project: Project, root: Path) -> Project:
    shutil.copytree(project.root, root, symlinks=True)
    return Project(root)


@pytest.fixture
def course_project(tmp_path) -> Project:
    """A project whose only input and test data are the course's own small format."""
    project = make_project(tmp_path / "course", {}, pd.read_csv(COURSE_FILE))
    shutil.copy(COURSE_FILE, project.input_dir / "dataset1.csv")
    return project


@contextmanager
def keep_writing(path: Path, every: float = 0.1):
    """A file still being written while the block runs: its time moves on every `every` s."""
    stop = threading.Event()

    def touch():
        while not stop.wait(every):
            try:
                os.utime(path, None)
            except OSError:
                return

    os.utime(path, None)
    writer = threading.Thread(target=touch, daemon=True)
    writer.start()
    try:
        yield path
    finally:
        stop.set()
        writer.join()


def run_steps(project: Project, *steps: str) -> None:
    """Run step scripts' `main` in order, failing the test if one fails."""
    import deployment
    import diagnostics
    import ingestion
    import reporting
    import scoring
    import training

    mains = {
        "ingestion": ingestion.main,
        "training": training.main,
        "scoring": scoring.main,
        "deployment": deployment.main,
        "diagnostics": diagnostics.main,
        "reporting": reporting.main,
    }
    for step in steps:
        assert mains[step](project.args()) == 0, f"{step} failed"


ALL_STEPS = ("ingestion", "training", "scoring", "deployment")


@pytest.fixture(scope="session")
def postgres_server():
    """A throw-away PostgreSQL server for the whole session (tests/dbservers.py), or a skip
    naming what is missing."""
    import dbservers

    server = dbservers.start_server()
    if isinstance(server, str):
        pytest.skip(f"no PostgreSQL server: {server}")
    yield server
    server.stop()


_history_databases = iter(range(1, 1_000_000))


def new_history_database(server, password: bool = True) -> str:
    """The URL of a new, empty database on the throw-away server, for a history."""
    name = f"history_{os.getpid()}_{next(_history_databases)}"
    server.new_database(name)
    return server.url(name, password=password).replace("postgresql+psycopg://", "postgresql://")


@pytest.fixture(params=["sqlite", "postgresql"])
def history_location(request, tmp_path):
    """Where a test's history database is: a file, or a new database on the throw-away
    PostgreSQL server (that case skipped, naming why, when no server can start)."""
    if request.param == "sqlite":
        return tmp_path / "h.db"
    return new_history_database(request.getfixturevalue("postgres_server"))


def use_history_server(project: Project, url: str) -> None:
    """Point the project's config at the history database `url` (history_db_url)."""
    config = json.loads(project.config_path.read_text())
    project.config_path.write_text(json.dumps({**config, "history_db_url": url}))
