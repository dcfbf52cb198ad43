"""Clients written for the course, run unchanged: the data file under their field names, by GET
or POST, in a JSON body, a form or the query string, and paths in their own project's layout."""

import os

import pytest

from clientrisk.api.app import create_app
from clientrisk.api.inputs import FILE_FIELDS

TEST_FILE = "testdata/testdata.csv"


@pytest.fixture
def client(diagnosed):
    return create_app(diagnosed.config_path, token="").test_client()


@pytest.fixture
def expected(client):
    """What `filepath` in a JSON body answers for the test file."""
    response = client.post("/prediction", json={"filepath": TEST_FILE, "reasons": False})
    assert response.status_code == 200
    return response.get_json()


def ask(client, method: str, form: str, field: str, path: str):
    """A request as a course client sends it: the path in `form` (json, form or query)."""
    url = "/prediction?reasons=false"
    if form == "query":
        return client.open(url + f"&{field}={path}", method=method)
    if form == "json":
        return client.open(url, method=method, json={field: path})
    return client.open(url, method=method, data={field: path})


@pytest.mark.parametrize("form", ["json", "form", "query"])
@pytest.mark.parametrize("method", ["POST", "GET"])
@pytest.mark.parametrize("field", FILE_FIELDS)
def test_every_file_field_in_every_form_gets_predictions(client, expected, field, method, form):
    response = ask(client, method, form, field, TEST_FILE)
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == expected


@pytest.mark.parametrize(
    "path",
    [
        "/their/project/testdata/testdata.csv",
        "/home/someone/course/starter-file/testdata/testdata.csv",
        "C:\\Users\\someone\\project\\testdata\\testdata.csv",
        "../elsewhere/testdata/testdata.csv",
        "testdata.csv",
        "/their/project/data/testdata.csv",
    ],
    ids=["their layout", "deeper layout", "windows", "relative elsewhere", "name", "by name"],
)
def test_a_path_in_another_layout_is_read_as_the_projects_own_file(client, expected, path):
    response = ask(client, "POST", "json", "data_file", path)
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == expected


def test_a_file_named_in_another_layout_is_found_in_any_data_folder(client):
    response = ask(client, "GET", "query", "filename", "/their/project/practicedata/batch1.csv")
    direct = ask(client, "GET", "query", "filename", "sourcedata/batch1.csv")
    assert response.status_code == direct.status_code == 200
    assert response.get_json() == direct.get_json()


def test_a_name_in_several_data_folders_is_ambiguous(client, diagnosed):
    (diagnosed.input_dir / "testdata.csv").write_bytes((diagnosed.root / TEST_FILE).read_bytes())
    response = ask(client, "POST", "json", "file_path", "/their/project/testdata.csv")
    assert response.status_code == 400
    assert response.get_json()["error"] == (
        "file_path: 2 files named 'testdata.csv' in the data folders"
        " (sourcedata/testdata.csv, testdata/testdata.csv); give the path relative to the"
        " project folder"
    )
    assert ask(client, "POST", "json", "file_path", TEST_FILE).status_code == 200


@pytest.fixture
def outside(diagnosed, tmp_path):
    """A CSV outside the data folders (in the project folder and beyond), and a link to it."""
    for path in (tmp_path / "secret.csv", diagnosed.root / "private.csv"):
        path.write_text("lastmonth_activity,lastyear_activity,number_of_employees\n1,2,3\n")
    os.symlink(tmp_path / "secret.csv", diagnosed.input_dir / "secret.csv")


@pytest.mark.parametrize(
    "path",
    [
        "/their/project/secret.csv",
        "/their/project/private.csv",
        "private.csv",
        "/their/project/config.json",
        "/their/project/models/trainedmodel.json",
        "/their/project/testdata/../../secret.csv",
        "/their/project/testdata/nothere.csv",
        "/etc/passwd",
    ],
)
def test_other_paths_are_still_refused(client, outside, path):
    response = ask(client, "POST", "json", "dataset_path", path)
    assert response.status_code == 403
    assert response.get_json() == {
        "error": "dataset_path: only files inside the configured data folders can be read"
    }


@pytest.mark.parametrize(
    ("request_kwargs", "message"),
    [
        ({"path": "/prediction?file=a.csv"}, "query: unknown parameter(s) 'file'; the file's path"),
        ({"path": "/prediction", "json": {"file": "a.csv"}}, "body: unknown field(s) 'file'; "),
        (
            {"path": "/prediction", "json": {"filename": "a.csv", "data_path": "b.csv"}},
            "body: give the file in one field, not data_path, filename",
        ),
        ({"path": "/prediction", "data": {"csv": "a.csv"}}, "form: expected exactly one field"),
        ({"path": "/prediction?datafile=a.csv", "json": {"datafile": "b.csv"}}, "not both"),
    ],
    ids=["query", "json", "two fields", "form", "query and body"],
)
def test_a_400_names_the_accepted_fields(client, request_kwargs, message):
    response = client.post(**request_kwargs)
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert message in error
    if "unknown" in message or "form" in message:
        assert ", ".join(FILE_FIELDS) in error
