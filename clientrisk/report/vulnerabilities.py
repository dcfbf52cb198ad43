"""Which installed dependencies, direct and transitive, have known vulnerabilities.

The package index's JSON for a release (`{index}/{name}/{version}/json`, PyPI's JSON API) lists
the vulnerabilities known for it. Every installed dependency of the project is asked about, in a
pool of daemon threads that all together get `dependency_timeout_seconds`; answers are cached
for a day beside the reports. A package the index did not answer about in time is named as not
checked, and an index that cannot be reached at all is said in one line: never a late or
failed run.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import queue
import threading
import time
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from clientrisk.atomicfiles import atomic_write_json, read_json
from clientrisk.config import PROJECT_DIR
from clientrisk.timestamps import parse_utc, utc_now

__all__ = [
    "OFFLINE_WORDS",
    "VULNERABILITY_CACHE_FILE",
    "VulnerablePackage",
    "check_vulnerabilities",
    "direct_dependencies",
    "installed_dependencies",
    "unchecked",
    "vulnerable_packages",
]

logger = logging.getLogger(__name__)

VULNERABILITY_CACHE_FILE = "vulnerabilitycache.json"
VULNERABILITY_CACHE_AGE = timedelta(days=1)
PYPROJECT_FILE = PROJECT_DIR / "pyproject.toml"
PROJECT_NAME = "clientrisk"
MAX_WORKERS = 16
SUMMARY_LENGTH = 200
# Packages not checked named in the one line (the rest are in diagnostics.json): a line, not a
# page of names, when the index answers for none of them.
NAMED_NOT_CHECKED = 5
UNREACHABLE_WORDS = "the package index could not be reached"
OFFLINE_WORDS = f"{UNREACHABLE_WORDS}: vulnerabilities not checked"


class VulnerablePackage(NamedTuple):
    """An installed release with known vulnerabilities, as the alerts name it."""

    package: str
    version: str
    ids: list[str]

    @property
    def alert_key(self) -> str:
        return f"vulnerable:{self.package}=={self.version}"


def direct_dependencies(pyproject_path: Path = PYPROJECT_FILE) -> list[str]:
    """The project's direct requirements: pyproject.toml beside the package, else the metadata
    of the installed `clientrisk` (when it was installed with `pip install .`)."""
    with contextlib.suppress(OSError, tomllib.TOMLDecodeError, KeyError):
        return list(
            tomllib.loads(pyproject_path.read_text(encoding="utf-8"))["project"]["dependencies"]
        )
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        return list(importlib.metadata.requires(PROJECT_NAME) or [])
    return []


def installed_dependencies(requirements: list[str]) -> dict[str, str]:
    """Installed version of each requirement and of everything it needs, by distribution name.

    Walks the installed metadata's requirements; one whose environment marker does not hold
    here (another platform or Python, an extra not asked for) is left out, and so is one that is
    not installed (the dependency table says so).
    """
    found: dict[str, str] = {}
    pending = [(text, frozenset()) for text in requirements]
    seen: set[tuple[str, frozenset]] = set()
    while pending:
        text, extras_of_parent = pending.pop()
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            logger.debug("skipped a requirement that cannot be read: %r", text)
            continue
        if requirement.marker and not any(
            requirement.marker.evaluate({"extra": extra}) for extra in extras_of_parent or {""}
        ):
            continue
        key = (canonicalize_name(requirement.name), frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            distribution = importlib.metadata.distribution(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            continue
        name = distribution.metadata["Name"] or requirement.name
        found[name] = distribution.version
        extras = frozenset(requirement.extras) | {""}
        pending.extend((sub, extras) for sub in distribution.requires or [])
    return dict(sorted(found.items(), key=lambda item: item[0].lower()))


def check_vulnerabilities(
    packages: dict[str, str],
    index_url: str,
    timeout: float,
    cache_path: Path,
    started: float | None = None,
) -> dict:
    """The known vulnerabilities of each installed release, from a day-old cache or the index.

    Args:
        packages: installed version by package name (`installed_dependencies`).
        timeout: seconds for all lookups together; nothing here takes longer.
        started: when the time-out began (`time.monotonic()`), if before this call.

    Returns:
        `checked` (how many packages were checked), `vulnerable` (package, installed, ids,
        fixed_in and the vulnerabilities), `not_checked` (package, installed, reason),
        `index_reached` and `in_words`, one line that says it all.
    """
    started = time.monotonic() if started is None else started
    cache = _read_cache(cache_path)
    oldest = datetime.now(UTC) - VULNERABILITY_CACHE_AGE
    releases = {f"{name}=={version}": (name, version) for name, version in packages.items()}
    known = {
        release: cache[release]["vulnerabilities"]
        for release in releases
        if release in cache and (parse_utc(cache[release]["checked_at"]) or oldest) > oldest
    }
    wanted = {
        release: f"{index_url.rstrip('/')}/{name}/{version}/json"
        for release, (name, version) in releases.items()
        if release not in known
    }
    answers, failures = _ask_all(wanted, started + timeout, timeout)
    if answers:
        stamp = utc_now()
        cache.update({r: {"vulnerabilities": v, "checked_at": stamp} for r, v in answers.items()})
        with contextlib.suppress(OSError):
            atomic_write_json(cache_path, cache)
    known.update(answers)
    logger.debug(
        "vulnerabilities: %d releases asked, %d answered, in %.2f s",
        len(wanted),
        len(answers),
        time.monotonic() - started,
    )
    vulnerable = [
        _vulnerable_row(name, version, known[release])
        for release, (name, version) in releases.items()
        if known.get(release)
    ]
    not_checked = [
        {"package": name, "installed": version, "reason": failures[release]}
        for release, (name, version) in releases.items()
        if release not in known
    ]
    result = {
        "checked": len(releases) - len(not_checked),
        "index_reached": not releases
        or bool(known)
        or any(r != UNREACHABLE_WORDS for r in failures.values()),
        "vulnerable": vulnerable,
        "not_checked": not_checked,
    }
    return {**result, "in_words": _words(result)}


def unchecked(packages: dict[str, str], reason: str) -> dict:
    """The result of a check that could not be made, in the shape of `check_vulnerabilities`."""
    return {
        "checked": 0,
        "index_reached": False,
        "vulnerable": [],
        "not_checked": [
            {"package": name, "installed": version, "reason": reason}
            for name, version in packages.items()
        ],
        "in_words": f"vulnerabilities not checked: {reason}",
    }


def vulnerable_packages(diagnostics_report: dict) -> list[VulnerablePackage]:
    """The installed releases with known vulnerabilities in a diagnostics report (none in a
    report made before vulnerabilities were checked)."""
    section = diagnostics_report.get("vulnerabilities") or {}
    return [
        VulnerablePackage(row["package"], row["installed"], list(row["ids"]))
        for row in section.get("vulnerable", [])
    ]


def _ask_all(urls: dict[str, str], deadline: float, timeout: float) -> tuple[dict, dict]:
    """GET each URL in a pool of daemon threads until `deadline` (`time.monotonic()`), the end
    of the `timeout` seconds.

    Returns the release's vulnerabilities by key for those answered, and why not for the rest.
    """
    import requests  # here, not at the top: the alerts read vulnerable_packages in every run

    work: queue.SimpleQueue = queue.SimpleQueue()
    for item in urls.items():
        work.put(item)
    answers: dict[str, list] = {}
    failures = dict.fromkeys(urls, f"no answer from the package index within {timeout:g} s")

    def worker() -> None:
        while time.monotonic() < deadline:
            try:
                key, url = work.get_nowait()
            except queue.Empty:
                return
            try:
                response = requests.get(url, timeout=max(0.05, deadline - time.monotonic()))
                if response.status_code == 404:
                    failures[key] = "not on the package index"
                    continue
                response.raise_for_status()
                answers[key] = _vulnerabilities_of(response.json())
            except (requests.RequestException, ValueError, KeyError, TypeError) as error:
                failures[key] = _failure_words(error, timeout)

    threads = [
        threading.Thread(target=worker, daemon=True) for _ in range(min(MAX_WORKERS, len(urls)))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    answered = dict(answers)  # a late worker may still add to `answers`
    return answered, {key: failures[key] for key in urls if key not in answered}


def _failure_words(error: Exception, timeout: float) -> str:
    import requests

    if isinstance(error, requests.ConnectTimeout):
        return UNREACHABLE_WORDS
    if isinstance(error, requests.Timeout):
        return f"no answer from the package index within {timeout:g} s"
    if isinstance(error, requests.ConnectionError):
        return UNREACHABLE_WORDS
    if isinstance(error, requests.HTTPError):
        return f"the package index answered {error.response.status_code}"
    return "the package index's answer could not be read"


def _vulnerabilities_of(release: dict) -> list[dict]:
    """The release's vulnerabilities that were not withdrawn, with what a reader needs."""
    found = []
    for item in release.get("vulnerabilities") or []:
        if item.get("withdrawn"):
            continue
        summary = item.get("summary") or (item.get("details") or "").strip().split("\n")[0]
        found.append(
            {
                "id": str(item["id"]),
                "aliases": [str(alias) for alias in item.get("aliases") or []],
                "summary": summary[:SUMMARY_LENGTH],
                "fixed_in": [str(version) for version in item.get("fixed_in") or []],
                "link": item.get("link"),
            }
        )
    return found


def _vulnerable_row(name: str, version: str, vulnerabilities: list[dict]) -> dict:
    fixed_in = sorted({v for item in vulnerabilities for v in item["fixed_in"]}, key=_version_key)
    return {
        "package": name,
        "installed": version,
        "ids": [item["id"] for item in vulnerabilities],
        "fixed_in": fixed_in,
        "vulnerabilities": vulnerabilities,
    }


def _version_key(text: str):
    try:
        return (0, Version(text), text)
    except InvalidVersion:
        return (1, None, text)


def _words(result: dict) -> str:
    """The vulnerability check in one line."""
    if not result["index_reached"]:
        return OFFLINE_WORDS
    checked, vulnerable = result["checked"], result["vulnerable"]
    if vulnerable:
        rows = "; ".join(
            f"{row['package']} {row['installed']} ({', '.join(row['ids'])}"
            + (
                f"; fixed in {', '.join(row['fixed_in'])}"
                if row["fixed_in"]
                else "; no fixed version known"
            )
            + ")"
            for row in vulnerable
        )
        line = f"{len(vulnerable)} of {checked} checked packages with known vulnerabilities: {rows}"
    else:
        line = f"no known vulnerabilities in the {checked} checked packages"
    missed = result["not_checked"]
    if missed:
        names = ", ".join(row["package"] for row in missed[:NAMED_NOT_CHECKED])
        if len(missed) > NAMED_NOT_CHECKED:
            names += f" and {len(missed) - NAMED_NOT_CHECKED} more, named in diagnostics.json"
        reasons = {row.get("reason") for row in missed}
        why = f": {reasons.pop()}" if len(reasons) == 1 and len(missed) > 1 else ""
        line += f"; {len(missed)} not checked ({names}){why}"
    return line


def _read_cache(path: Path) -> dict:
    try:
        cache = read_json(path, "vulnerability cache")
        return {k: v for k, v in cache.items() if _cached_answer(v)}
    except Exception:  # a missing or damaged cache only costs a lookup
        return {}


def _cached_answer(entry) -> bool:
    """Whether a cache entry has the shape this module writes (any other is asked again)."""
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("checked_at"), str)
        and isinstance(entry.get("vulnerabilities"), list)
        and all(
            isinstance(item, dict)
            and isinstance(item.get("id"), str)
            and isinstance(item.get("fixed_in"), list)
            for item in entry["vulnerabilities"]
        )
    )
