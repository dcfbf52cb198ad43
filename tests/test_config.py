import json

import pytest

import ingestion
import scoring
import training
from clientrisk.config import DEFAULT_CONFIG_PATH, load_config
from clientrisk.errors import ConfigError

STEP_MAINS = [ingestion.main, training.main, scoring.main]


def test_relative_paths_resolve_against_the_config_folder(project, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    config = load_config(project.config_path)
    assert config.input_dir == project.root / "sourcedata"
    assert config.model_dir == project.root / "models"
    assert config.test_data_file == project.root / "testdata" / "testdata.csv"


def test_steps_run_from_another_folder(project, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert ingestion.main(project.args()) == 0
    assert (project.root / "ingesteddata" / "finaldata.csv").exists()
    assert not (tmp_path / "ingesteddata").exists()


def test_shipped_configs_are_valid():
    production = load_config(DEFAULT_CONFIG_PATH)
    practice = load_config(DEFAULT_CONFIG_PATH.with_name("practiceconfig.json"))
    assert production.input_dir.name == "sourcedata"
    assert production.model_dir.name == "models"
    assert practice.input_dir.name == "practicedata"
    assert practice.model_dir.name == "practicemodels"
    # Practicing never touches what production has ingested or deployed.
    assert practice.deploy_dir != production.deploy_dir
    assert practice.ingested_dir != production.ingested_dir


def write_config(project, text):
    project.config_path.write_text(text)


BAD_CONFIGS = {
    "invalid JSON": ('{"input_folder_path": ', "invalid JSON at line 1"),
    "not an object": ("[1, 2]", "expected a JSON object"),
    "missing key": (
        json.dumps({"input_folder_path": "sourcedata", "output_folder_path": "x"}),
        "missing required key(s): test_data_path, output_model_path, prod_deployment_path",
    ),
    "unknown key": (
        json.dumps(
            {
                "input_folder_path": "sourcedata",
                "output_folder_path": "ingesteddata",
                "test_data_path": "testdata",
                "output_model_path": "models",
                "prod_deployment_path": "production_deployment",
                "output_modle_path": "typo",
            }
        ),
        "unknown key(s): output_modle_path",
    ),
    "input folder does not exist": (
        json.dumps(
            {
                "input_folder_path": "nowhere",
                "output_folder_path": "ingesteddata",
                "test_data_path": "testdata",
                "output_model_path": "models",
                "prod_deployment_path": "production_deployment",
            }
        ),
        "input_folder_path",
    ),
    "path not a string": (
        json.dumps(
            {
                "input_folder_path": "sourcedata",
                "output_folder_path": 3,
                "test_data_path": "testdata",
                "output_model_path": "models",
                "prod_deployment_path": "production_deployment",
            }
        ),
        "'output_folder_path' must be a non-empty folder path",
    ),
}


@pytest.mark.parametrize("case", BAD_CONFIGS, ids=list(BAD_CONFIGS))
def test_bad_config_is_one_line_with_exit_code_2(project, case, capsys):
    text, expected = BAD_CONFIGS[case]
    write_config(project, text)
    for main in STEP_MAINS:
        assert main(project.args()) == 2
        err = capsys.readouterr().err
        assert expected in err
        assert str(project.config_path) in err
        assert "Traceback" not in err
        assert len(err.strip().splitlines()) == 1


def test_missing_config_file(tmp_path, capsys):
    assert ingestion.main(["--config", str(tmp_path / "absent.json")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'absent.json'}: config file not found" in err


def test_load_config_raises_config_error(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.json")


def config_with(**settings):
    return json.dumps(
        {
            "input_folder_path": "sourcedata",
            "output_folder_path": "ingesteddata",
            "test_data_path": "testdata",
            "output_model_path": "models",
            "prod_deployment_path": "production_deployment",
            **settings,
        }
    )


def test_settings_have_defaults(project):
    write_config(project, config_with())
    settings = load_config(project.config_path).settings
    assert settings["timing_repeats"] == 3
    assert settings["dependency_timeout_seconds"] == 5.0


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"timing_repeats": 0}, "'timing_repeats' must be greater than 0, not 0"),
        ({"timing_repeats": "3"}, "'timing_repeats' must be a whole number, not '3'"),
        ({"timing_repeats": 2.5}, "'timing_repeats' must be a whole number, not 2.5"),
        ({"dependency_timeout_seconds": True}, "must be a number, not True"),
        ({"package_index_url": ""}, "'package_index_url' must be a non-empty text"),
        ({"calls_per_week": -1}, "'calls_per_week' must be at least 0, not -1"),
        ({"calls_per_week": 2.5}, "'calls_per_week' must be a whole number, not 2.5"),
        ({"calls_per_week": "20"}, "'calls_per_week' must be a whole number, not '20'"),
    ],
)
def test_bad_setting_is_a_clear_error(project, settings, message, capsys):
    write_config(project, config_with(**settings))
    assert ingestion.main(project.args()) == 2
    assert message in capsys.readouterr().err
