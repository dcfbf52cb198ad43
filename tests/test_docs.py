"""The README describes every script and every option it takes."""

import importlib
import re

import pytest

from clientrisk.config import PROJECT_DIR

README = (PROJECT_DIR / "README.md").read_text()
SCRIPTS = sorted(
    path.stem
    for path in PROJECT_DIR.glob("*.py")
    if 'if __name__ == "__main__":' in path.read_text()
)


def test_there_are_scripts():
    assert {"ingestion", "training", "scoring", "deployment"} <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_and_its_options_are_documented(script, capsys):
    assert f"python {script}.py" in README
    module = importlib.import_module(script)
    with pytest.raises(SystemExit):
        module.main(["--help"])
    options = set(re.findall(r"(?<![\w-])--[a-z][a-z-]+", capsys.readouterr().out)) - {"--help"}
    undocumented = sorted(option for option in options if option not in README)
    assert not undocumented, f"{script}.py options missing from the README: {undocumented}"


def test_readme_commands_match_ci():
    ci = (PROJECT_DIR / ".ci" / "run").read_text()
    commands = re.findall(r"```sh\n(.+?)\n```", README)
    assert commands[1] in ci.splitlines()


def test_every_route_is_documented():
    from clientrisk.api.app import create_app

    app = create_app()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert f"`{method} {rule.rule}`" in README, f"{method} {rule.rule} is not in the README"
