"""`GET /ping` and `POST /invocations` in MLflow's scoring format, beside `/prediction`."""

import pytest

from clientrisk.api.app import create_app
from clientrisk.data.clientcsv import FEATURES

ROWS = [
    {"lastmonth_activity": 0, "lastyear_activity": 3000, "number_of_employees": 40},
    {"lastmonth_activity": 260, "lastyear_activity": 3000, "number_of_employees": 40},
]
VALUES = [[row[name] for name in FEATURES] for row in ROWS]
CSV = ",".join(FEATURES) + "\n" + "\n".join(",".join(map(str, row)) for row in VALUES) + "\n"


@pytest.fixture
def client(diagnosed):
    return create_app(diagnosed.config_path, token="").test_client()


@pytest.fixture
def expected(client):
    answer = client.post("/prediction", json={"records": ROWS, "reasons": False}).get_json()
    return {"predictions": answer["predictions"], "probabilities": answer["probabilities"]}


PAYLOADS = {
    "dataframe_split": {"dataframe_split": {"columns": list(FEATURES), "data": VALUES}},
    "dataframe_split with index": {
        "dataframe_split": {"index": [0, 1], "columns": list(FEATURES), "data": VALUES}
    },
    "dataframe_records": {"dataframe_records": ROWS},
    "instances as records": {"instances": ROWS},
    "instances as rows": {"instances": VALUES},
    "inputs as rows": {"inputs": VALUES},
    "inputs as columns": {"inputs": {name: [row[name] for row in ROWS] for name in FEATURES}},
    "with empty params": {"dataframe_records": ROWS, "params": {}},
}


@pytest.mark.parametrize("payload", list(PAYLOADS))
def test_every_json_payload_form_gets_the_predictions(client, expected, payload):
    response = client.post("/invocations", json=PAYLOADS[payload])
    assert response.status_code == 200, response.get_json()
    answer = response.get_json()
    assert answer["predictions"] == expected["predictions"]
    assert answer["probabilities"] == expected["probabilities"]
    assert answer["model_version"] == "v0001"
    dormant, busy = answer["probabilities"]
    assert dormant > busy


def test_a_csv_body_gets_the_predictions(client, expected):
    response = client.post("/invocations", data=CSV, content_type="text/csv")
    assert response.status_code == 200
    assert response.get_json()["predictions"] == expected["predictions"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "body: give exactly one of dataframe_split, dataframe_records, instances, inputs"),
        (
            {"dataframe_records": ROWS, "instances": ROWS},
            "body: give exactly one of dataframe_split",
        ),
        ({"records": ROWS}, "body: unknown field(s) 'records'; expected one of dataframe_split"),
        ({"dataframe_split": {"data": VALUES}}, 'dataframe_split: expected {"columns"'),
        (
            {"dataframe_split": {"columns": list(FEATURES), "data": [[1, 2]]}},
            "dataframe_split.data[0]: expected a list of 3 values",
        ),
        ({"instances": [[1, 2]]}, "instances[0]: expected 3 values"),
        ({"inputs": {"lastmonth_activity": [1], "lastyear_activity": [1, 2]}}, "different lengths"),
        (
            {"dataframe_records": [{**ROWS[0], "lastyear_activity": "x"}]},
            'dataframe_records[0].lastyear_activity: expected a number or null, got "x"',
        ),
        ({"dataframe_records": [ROWS[0]], "params": {"a": 1}}, "params: this model takes no"),
        ([1], "body: expected a JSON object"),
    ],
)
def test_a_bad_payload_is_a_400_naming_what_is_wrong(client, body, message):
    response = client.post("/invocations", json=body)
    assert response.status_code == 400
    assert message in response.get_json()["error"]


def test_another_media_type_is_415(client):
    assert (
        client.post("/invocations", data="<a/>", content_type="application/xml").status_code == 415
    )


def test_ping_answers_while_a_model_is_served(client):
    response = client.get("/ping")
    assert response.status_code == 200
    assert response.get_data(as_text=True) == "\n"


def test_ping_without_a_model_is_503(project):
    response = create_app(project.config_path, token="").test_client().get("/ping")
    assert response.status_code == 503


def test_ping_needs_no_token_and_invocations_does(diagnosed):
    client = create_app(diagnosed.config_path, token="secret").test_client()
    assert client.get("/ping").status_code == 200
    assert client.post("/invocations", json=PAYLOADS["dataframe_records"]).status_code == 401
    headers = {"Authorization": "Bearer secret"}
    response = client.post("/invocations", json=PAYLOADS["dataframe_records"], headers=headers)
    assert response.status_code == 200


def test_the_answer_is_as_described(client):
    answer = client.post("/invocations", json=PAYLOADS["dataframe_records"]).get_json()
    described = client.get("/openapi.json").get_json()["components"]["schemas"]["MlflowPredictions"]
    assert set(described["required"]) <= set(answer) <= set(described["properties"])
