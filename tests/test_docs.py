"""The README and the pages of docs/ describe every script, option, route and setting.

The README is the front door; the details live in `docs/`, one page a concern. These tests read
them together: whatever the code offers must be described somewhere, the README must link every
page, and every relative link must lead to a file and heading that exist.
"""

import ast
import importlib
import json
import re
from pathlib import Path

import pytest

from clientrisk.config import OPTIONAL_PATHS, PROJECT_DIR, REQUIRED_KEYS, SETTINGS

README_PATH = PROJECT_DIR / "README.md"
DOCS_DIR = PROJECT_DIR / "docs"
README = README_PATH.read_text(encoding="utf-8")
PAGES = {path: path.read_text(encoding="utf-8") for path in sorted(DOCS_DIR.glob("*.md"))}
ALL_TEXT = "\n".join([README, *PAGES.values()])
CONFIGURATION_PAGE = DOCS_DIR / "configuration.md"
# The pages the README's "where to read on" promises, one a concern.
EXPECTED_PAGES = {
    "data-and-store.md", "model.md", "drift-and-adapting.md", "pipeline-and-cron.md",
    "api-and-dashboard.md", "configuration.md", "operations.md", "development.md",
}  # fmt: skip


def has_main(path: Path) -> bool:
    return 'if __name__ == "__main__":' in path.read_text(encoding="utf-8")


# Step scripts at the top level (their options come from --help, shared ones included), and the
# other scripts (their options are read from their add_argument calls).
SCRIPTS = sorted(path.stem for path in PROJECT_DIR.glob("*.py") if has_main(path))
OTHER_SCRIPTS = sorted(
    path.relative_to(PROJECT_DIR).as_posix()
    for folder in ("scripts", "bench", "tests/data")
    for path in (PROJECT_DIR / folder).glob("*.py")
    if has_main(path)
)


# --- what the checks look for -------------------------------------------------------------------


def without_code_blocks(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def heading_anchors(text: str) -> set[str]:
    """The anchors a Markdown renderer gives the headings of `text` (GitHub's rule)."""
    anchors, seen = set(), {}
    for heading in re.findall(r"^#{1,6} +(.+?) *#*$", without_code_blocks(text), flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def broken_links(path: Path, text: str) -> list[str]:
    """Relative links in `text` (the file at `path`) to a file or heading that does not exist."""
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", without_code_blocks(text)):
        if re.match(r"[a-z]+:", target):
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists() or (
            anchor
            and linked.suffix == ".md"
            and anchor not in heading_anchors(linked.read_text(encoding="utf-8"))
        ):
            broken.append(target)
    return broken


def setting_rows(text: str) -> dict[str, str]:
    """Each key a table row starts with (| `key` | ...), and the row's second cell."""
    rows = {}
    for key, rest in re.findall(r"^\| `([a-z_]+)` \|(.*)$", text, flags=re.M):
        rows[key] = rest.split("|")[0].strip()
    return rows


def default_shown(cell: str, default) -> bool:
    """Whether a table cell shows the setting's `default` (a number, `true`/`false` or text)."""
    shown = cell.strip("` ")
    if default == "":  # an optional text, off when empty
        return shown == "(empty)"
    if default is None:  # a setting that is unset unless given
        return shown == "(none)"
    if isinstance(default, dict):
        return shown == json.dumps(default)
    if isinstance(default, bool):
        return shown == str(default).lower()
    if isinstance(default, int | float):
        try:
            return float(shown) == default
        except ValueError:
            return False
    return shown == default


def undocumented_settings(text: str) -> list[str]:
    """Config keys with no row of their own in `text`, and settings whose row shows another
    default than the code's."""
    rows = setting_rows(text)
    missing = [key for key in (*REQUIRED_KEYS, *OPTIONAL_PATHS) if key not in rows]
    for key, spec in SETTINGS.items():
        if key not in rows or not default_shown(rows[key], spec.default):
            missing.append(key)
    return missing


def mentioned(option: str, text: str = ALL_TEXT) -> bool:
    """Whether `option` (`--name`) appears in `text` as a whole option, not part of a longer one."""
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text) is not None


def options_of(path: Path) -> set[str]:
    """The long options a script's parser adds (`add_argument("--name", ...)`)."""
    options = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument":
            for argument in node.args:
                if isinstance(argument, ast.Constant) and str(argument.value).startswith("--"):
                    options.add(argument.value)
    return options


def environment_variables() -> set[str]:
    """The environment variables the package and the scripts read."""
    sources = [*PROJECT_DIR.glob("*.py"), *(PROJECT_DIR / "clientrisk").rglob("*.py")]
    names = set()
    for path in sources:
        names |= set(re.findall(r'"(RISK_[A-Z_]+|PROMETHEUS_[A-Z_]+)"', path.read_text()))
    return names


# --- the checks -------------------------------------------------------------------------------


def test_there_are_scripts_and_pages():
    assert {"ingestion", "training", "scoring", "deployment", "fullprocess"} <= set(SCRIPTS)
    assert {"scripts/generate_data.py", "scripts/install_cron.py"} <= set(OTHER_SCRIPTS)
    assert {path.name for path in PAGES} >= EXPECTED_PAGES


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_and_its_options_are_documented(script, capsys):
    assert f"python {script}.py" in ALL_TEXT
    module = importlib.import_module(script)
    with pytest.raises(SystemExit):
        module.main(["--help"])
    options = set(re.findall(r"(?<![\w-])--[a-z][a-z-]+", capsys.readouterr().out)) - {"--help"}
    undocumented = sorted(option for option in options if not mentioned(option))
    assert not undocumented, f"{script}.py options missing from the docs: {undocumented}"


@pytest.mark.parametrize("script", OTHER_SCRIPTS)
def test_other_scripts_and_their_options_are_documented(script):
    assert f"python {script}" in ALL_TEXT
    options = options_of(PROJECT_DIR / script)
    undocumented = sorted(option for option in options if not mentioned(option))
    assert not undocumented, f"{script} options missing from the docs: {undocumented}"


def test_readme_commands_come_first_and_match_ci():
    ci = (PROJECT_DIR / ".ci" / "run").read_text()
    commands = re.findall(r"```sh\n(.+?)\n```", README, flags=re.S)
    assert len(commands) >= 2
    assert "\n" not in commands[0]
    assert commands[0].endswith("fullprocess.py")
    assert commands[1] in ci.splitlines()


def test_every_route_is_documented():
    from clientrisk.api.app import create_app

    app = create_app()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert f"`{method} {rule.rule}`" in ALL_TEXT, f"{method} {rule.rule} is not documented"


def test_every_setting_has_its_row_with_its_default():
    missing = undocumented_settings(PAGES[CONFIGURATION_PAGE])
    assert not missing, f"config keys missing from docs/configuration.md: {missing}"


def test_every_environment_variable_is_documented():
    names = environment_variables()
    assert {"RISK_CONFIG", "RISK_API_URL", "RISK_API_TOKEN"} <= names
    missing = sorted(name for name in names if f"| `{name}` |" not in PAGES[CONFIGURATION_PAGE])
    assert not missing, f"environment variables missing from docs/configuration.md: {missing}"


def test_every_page_is_linked_from_the_readme():
    unlinked = sorted(path.name for path in PAGES if f"](docs/{path.name}" not in README)
    assert not unlinked, f"docs pages the README does not link: {unlinked}"


@pytest.mark.parametrize(
    "path", [README_PATH, *PAGES], ids=lambda path: path.relative_to(PROJECT_DIR).as_posix()
)
def test_relative_links_lead_somewhere(path):
    assert not broken_links(path, path.read_text(encoding="utf-8"))


# --- the checks can fail ----------------------------------------------------------------------


@pytest.mark.parametrize("key", ["min_batch_rows", "history_db_path", "input_folder_path"])
def test_a_setting_removed_from_the_docs_is_found(key):
    text = PAGES[CONFIGURATION_PAGE]
    without = "\n".join(line for line in text.splitlines() if f"| `{key}` |" not in line)
    assert undocumented_settings(without) == [key]


def test_a_wrong_default_is_found():
    text = PAGES[CONFIGURATION_PAGE].replace("| `keep_versions` | 10 |", "| `keep_versions` | 5 |")
    assert undocumented_settings(text) == ["keep_versions"]


@pytest.mark.parametrize(
    "link", ["(missing.md)", "(configuration.md#no-such-heading)", "(#nowhere)"]
)
def test_a_broken_link_is_found(link):
    text = PAGES[CONFIGURATION_PAGE] + f"\nSee [there]{link}.\n"
    assert broken_links(CONFIGURATION_PAGE, text) == [link.strip("()")]
