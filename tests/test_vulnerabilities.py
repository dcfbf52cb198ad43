import importlib.metadata
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pypdf import PdfReader

import diagnostics
from clientrisk.api.app import create_app
from clientrisk.report import vulnerabilities
from clientrisk.report.dependencies import check_dependencies
from clientrisk.report.vulnerabilities import (
    OFFLINE_WORDS,
    VULNERABILITY_CACHE_FILE,
    check_vulnerabilities,
    installed_dependencies,
    vulnerable_packages,
)
from conftest import CLOSED_INDEX_URL, run_steps

URLLIB3 = importlib.metadata.version("urllib3")
CERTIFI = importlib.metadata.version("certifi")
IDNA = importlib.metadata.version("idna")
RELEASE_VULNERABILITIES = {
    # urllib3 is not a direct dependency: requests needs it.
    ("urllib3", URLLIB3): [
        {
            "id": "GHSA-aaaa-bbbb-cccc",
            "aliases": ["CVE-2099-0001"],
            "summary": "Proxy credentials leak on redirect",
            "details": "Long text.",
            "fixed_in": ["99.1.0"],
            "link": "https://osv.dev/vulnerability/GHSA-aaaa-bbbb-cccc",
            "withdrawn": None,
        },
        {
            "id": "PYSEC-2099-9",
            "aliases": [],
            "summary": None,
            "details": "Withdrawn: not a vulnerability after all.",
            "fixed_in": ["99.0.1"],
            "link": None,
            "withdrawn": "2099-01-02T00:00:00Z",
        },
    ],
    # certifi's only vulnerability was withdrawn.
    ("certifi", CERTIFI): [
        {
            "id": "GHSA-withdrawn",
            "aliases": [],
            "details": "Withdrawn.",
            "fixed_in": [],
            "withdrawn": "2099-01-02T00:00:00Z",
        }
    ],
}


def make_index_handler(hanging: frozenset = frozenset(), asked: list | None = None):
    class Index(BaseHTTPRequestHandler):
        """PyPI's JSON API: /pypi/NAME/json (latest) and /pypi/NAME/VERSION/json (a release)."""

        def do_GET(self):
            parts = self.path.strip("/").split("/")
            if asked is not None:
                asked.append(self.path)
            if parts[1] in hanging:
                time.sleep(5)
                return
            if len(parts) == 4:
                body = {"info": {"version": parts[2]}}
                body["vulnerabilities"] = RELEASE_VULNERABILITIES.get((parts[1], parts[2]), [])
            else:
                body = {"info": {"version": "99.0"}}
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    return Index


class IndexServer(ThreadingHTTPServer):
    request_queue_size = 128  # every lookup connects at once: none may wait for a retry


def serve(handler):
    server = IndexServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/pypi"


@pytest.fixture
def vulnerable_index():
    server, url = serve(make_index_handler())
    yield url
    server.shutdown()


@pytest.fixture
def hanging_index():
    """Answers everything at once but idna, about which it hangs."""
    server, url = serve(make_index_handler(frozenset({"idna"})))
    yield url
    server.shutdown()


@pytest.fixture
def needs_requests(tmp_path):
    """A project whose only direct dependency is requests, and whose lock pins requests."""
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "x"\ndependencies = ["requests>=2"]\n')
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(f"requests\nurllib3=={URLLIB3} \\\n    --hash=sha256:00\ncertifi\n")
    return requirements, pyproject


def test_the_walk_reaches_transitive_dependencies_and_evaluates_markers():
    found = installed_dependencies(["requests>=2"])
    assert {"requests", "urllib3", "idna", "certifi", "charset-normalizer"} <= set(found)
    assert found["urllib3"] == URLLIB3
    # A marker that does not hold here leaves the requirement out, and what it needs with it.
    assert installed_dependencies(['requests; python_version < "3"']) == {}
    # An extra not asked for leaves its requirements out (requests[socks] needs PySocks).
    assert "PySocks" not in found


def test_a_vulnerable_transitive_dependency_is_reported_with_its_fix(
    deployed, needs_requests, vulnerable_index
):
    config = deployed.config
    config.settings["package_index_url"] = vulnerable_index
    table, found = check_dependencies(config, *needs_requests)
    (row,) = found["vulnerable"]
    assert (row["package"], row["installed"]) == ("urllib3", URLLIB3)
    # The withdrawn one is left out, on urllib3 as on certifi.
    assert row["ids"] == ["GHSA-aaaa-bbbb-cccc"]
    assert row["fixed_in"] == ["99.1.0"]
    assert row["vulnerabilities"][0]["summary"] == "Proxy credentials leak on redirect"
    assert found["not_checked"] == []
    assert found["in_words"] == (
        f"1 of {found['checked']} checked packages with known vulnerabilities:"
        f" urllib3 {URLLIB3} (GHSA-aaaa-bbbb-cccc; fixed in 99.1.0)"
    )
    by_name = {r["package"]: r for r in table}
    assert by_name["urllib3"]["status"] == "outdated"
    assert by_name["urllib3"]["vulnerabilities"] == ["GHSA-aaaa-bbbb-cccc"]
    assert by_name["certifi"]["vulnerabilities"] == []
    (alert,) = vulnerable_packages({"vulnerabilities": found})
    assert alert.alert_key == f"vulnerable:urllib3=={URLLIB3}"
    assert alert.ids == ["GHSA-aaaa-bbbb-cccc"]


def test_a_hanging_index_keeps_the_time_out_and_names_what_was_not_checked(
    deployed, needs_requests, hanging_index
):
    config = deployed.config
    config.settings["package_index_url"] = hanging_index
    config.settings["dependency_timeout_seconds"] = 1
    started = time.monotonic()
    table, found = check_dependencies(config, *needs_requests)
    assert time.monotonic() - started < 1.5
    assert found["index_reached"]
    assert [(r["package"], r["reason"]) for r in found["not_checked"]] == [
        ("idna", "no answer from the package index within 1 s")
    ]
    assert [r["package"] for r in found["vulnerable"]] == ["urllib3"]
    assert found["in_words"].endswith("; 1 not checked (idna)")
    assert {r["package"]: r["vulnerabilities"] for r in table}["urllib3"] == ["GHSA-aaaa-bbbb-cccc"]


def test_offline_the_check_says_so_in_one_line(deployed, needs_requests):
    started = time.monotonic()
    table, found = check_dependencies(deployed.config, *needs_requests)
    assert time.monotonic() - started < 2
    assert found["in_words"] == OFFLINE_WORDS
    assert not found["index_reached"]
    assert found["vulnerable"] == []
    assert all(row["vulnerabilities"] is None for row in table)


def test_a_failed_check_is_said_and_the_table_still_made(
    deployed, needs_requests, vulnerable_index, monkeypatch
):
    def broken(*args, **kwargs):
        raise OSError("metadata unreadable")

    monkeypatch.setattr(vulnerabilities, "check_vulnerabilities", broken)
    config = deployed.config
    config.settings["package_index_url"] = vulnerable_index
    table, found = check_dependencies(config, *needs_requests)
    assert found["in_words"] == "vulnerabilities not checked: the check failed: metadata unreadable"
    assert "urllib3" in {row["package"] for row in found["not_checked"]}
    assert {row["package"]: row["status"] for row in table}["urllib3"] == "outdated"


def test_answers_are_cached_for_a_day(tmp_path, vulnerable_index):
    cache = tmp_path / VULNERABILITY_CACHE_FILE
    packages = {"urllib3": URLLIB3, "idna": IDNA}
    first = check_vulnerabilities(packages, vulnerable_index, 2, cache)
    again = check_vulnerabilities(packages, CLOSED_INDEX_URL, 2, cache)
    assert again == first
    assert [r["package"] for r in again["vulnerable"]] == ["urllib3"]
    stale = json.loads(cache.read_text())
    for entry in stale.values():
        entry["checked_at"] = "2020-01-01T00:00:00Z"
    cache.write_text(json.dumps(stale))
    assert check_vulnerabilities(packages, CLOSED_INDEX_URL, 2, cache)["in_words"] == OFFLINE_WORDS


@pytest.mark.parametrize(
    "damage",
    [
        "not json",
        '{"urllib3==1": 3}',
        '{"urllib3==%s": {"checked_at": "2099-01-01T00:00:00Z", "vulnerabilities": [7]}}',
    ],
)
def test_a_damaged_cache_is_asked_again(tmp_path, vulnerable_index, damage):
    cache = tmp_path / VULNERABILITY_CACHE_FILE
    cache.write_text(damage.replace("%s", URLLIB3))
    found = check_vulnerabilities({"urllib3": URLLIB3}, vulnerable_index, 2, cache)
    assert [row["ids"] for row in found["vulnerable"]] == [["GHSA-aaaa-bbbb-cccc"]]


def test_diagnostics_checks_every_installed_dependency(deployed, vulnerable_index, capsys):
    config = json.loads(deployed.config_path.read_text())
    config["package_index_url"] = vulnerable_index
    deployed.config_path.write_text(json.dumps(config))
    assert diagnostics.main(deployed.args()) == 0
    out = capsys.readouterr().out
    report = json.loads((deployed.root / "models" / "diagnostics.json").read_text())
    found = report["vulnerabilities"]
    # Every package of the lock is a direct or transitive dependency, and every one was checked.
    assert found["checked"] == len(report["dependencies"])
    assert found["not_checked"] == []
    assert [row["package"] for row in found["vulnerable"]] == ["urllib3"]
    assert f"vulnerabilities: {found['in_words']}" in out
    body = create_app(deployed.config_path, token="").test_client().get("/diagnostics").get_json()
    assert body["vulnerabilities"] == found
    assert body["vulnerable_packages"] == [f"urllib3=={URLLIB3}"]


def test_offline_diagnostics_say_so_in_one_line(diagnosed):
    report = json.loads((diagnosed.root / "models" / "diagnostics.json").read_text())
    assert report["vulnerabilities"]["in_words"] == OFFLINE_WORDS
    body = create_app(diagnosed.config_path, token="").test_client().get("/diagnostics").get_json()
    assert body["vulnerabilities"]["in_words"] == OFFLINE_WORDS
    assert body["vulnerable_packages"] == []


def test_the_report_shows_vulnerable_packages_beside_the_outdated(diagnosed):
    path = diagnosed.root / "models" / "diagnostics.json"
    report = json.loads(path.read_text())
    for row in report["dependencies"]:
        row["vulnerabilities"] = ["GHSA-aaaa-bbbb-cccc"] if row["package"] == "urllib3" else []
    report["vulnerabilities"] = {
        "checked": len(report["dependencies"]),
        "index_reached": True,
        "vulnerable": [],
        "not_checked": [],
        "in_words": "1 of 34 checked packages with known vulnerabilities: urllib3 2.0.0"
        " (GHSA-aaaa-bbbb-cccc; fixed in 99.1.0)",
    }
    path.write_text(json.dumps(report))
    run_steps(diagnosed, "reporting")
    pdf = diagnosed.root / "models" / "summary_report.pdf"
    text = " ".join("\n".join(page.extract_text() for page in PdfReader(pdf).pages).split())
    assert "Known vulnerabilities" in text
    assert re.search(r"urllib3 \S+ \S+ \S+ (up to date|outdated|unknown) 1 ", text)
    assert "(GHSA-aaaa-bbbb-cccc; fixed in 99.1.0)." in text


def test_many_packages_not_checked_are_counted_in_one_line_with_the_reason():
    result = {
        "index_reached": True,
        "checked": 0,
        "vulnerable": [],
        "not_checked": [
            {"package": f"p{n}", "installed": "1.0", "reason": "not on the package index"}
            for n in range(38)
        ],
    }
    line = vulnerabilities._words(result)
    assert line == (
        "no known vulnerabilities in the 0 checked packages; 38 not checked (p0, p1, p2, p3, p4"
        " and 33 more, named in diagnostics.json): not on the package index"
    )
