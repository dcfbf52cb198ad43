"""Which dependencies are outdated or vulnerable: pinned, installed and latest version of each
requirement, and the known vulnerabilities of every installed dependency, direct and transitive.

The latest versions come from the package index's JSON API, asked in daemon threads that all
together get `dependency_timeout_seconds`, and are cached for a day beside the reports: a
package index that is slow or unreachable makes a version "unknown", never a late or failed run.
The vulnerabilities (`clientrisk.report.vulnerabilities`) are asked at the same time, within the
same time-out.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from clientrisk.atomicfiles import atomic_write_json, read_json
from clientrisk.config import PROJECT_DIR, Config
from clientrisk.report import vulnerabilities
from clientrisk.timestamps import parse_utc, utc_now

logger = logging.getLogger(__name__)

DEPENDENCY_CACHE_FILE = "dependencycache.json"
DEPENDENCY_CACHE_AGE = timedelta(days=1)
REQUIREMENTS_FILE = PROJECT_DIR / "requirements.txt"


def read_requirements(path: Path) -> list[tuple[str, str | None]]:
    """(name, pinned version or None) for each requirement line, as in a plain requirements
    file or a lock with hashes (`name==1.0 \\` followed by `--hash=...` lines)."""
    requirements = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip().removesuffix("\\").strip()
        if not line or line.startswith("-"):
            continue
        name, _, pinned = line.partition("==")
        requirements.append((name.strip(), pinned.strip() or None))
    return requirements


def installed_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def latest_versions(
    names: list[str],
    index_url: str,
    timeout: float,
    cache_path: Path,
    started: float | None = None,
) -> dict:
    """Latest released version of each package, from a day-old cache or the package index.

    Every lookup runs in a daemon thread and all of them together get `timeout` seconds from
    `started` (`time.monotonic()`; by default now); a package not answered by then is None
    ("unknown"). Nothing here can hang the caller.
    """
    deadline = (time.monotonic() if started is None else started) + timeout
    cache = _read_cache(cache_path)
    oldest = datetime.now(UTC) - DEPENDENCY_CACHE_AGE
    found = {
        name: cache[name]["latest"]
        for name in names
        if name in cache and (parse_utc(cache[name]["checked_at"]) or oldest) > oldest
    }
    wanted = [name for name in names if name not in found]
    logger.debug("latest versions: %d from the day-old cache, %d asked", len(found), len(wanted))
    answers: dict[str, str] = {}

    def ask(name: str) -> None:
        with contextlib.suppress(Exception):
            response = requests.get(
                f"{index_url.rstrip('/')}/{name}/json",
                timeout=max(0.05, deadline - time.monotonic()),
            )
            response.raise_for_status()
            answers[name] = str(response.json()["info"]["version"])

    threads = [threading.Thread(target=ask, args=(name,), daemon=True) for name in wanted]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    fresh = {name: answers[name] for name in wanted if name in answers}
    if fresh:
        stamp = utc_now()
        cache.update({name: {"latest": v, "checked_at": stamp} for name, v in fresh.items()})
        with contextlib.suppress(OSError):
            atomic_write_json(cache_path, cache)
    return {name: found.get(name, fresh.get(name)) for name in names}


def _read_cache(path: Path) -> dict:
    try:
        cache = read_json(path, "dependency cache")
        return {k: v for k, v in cache.items() if {"latest", "checked_at"} <= set(v)}
    except Exception:  # a missing or damaged cache only costs a lookup
        return {}


def dependency_status(
    config: Config, requirements_path: Path = REQUIREMENTS_FILE, started: float | None = None
) -> list[dict]:
    """Pinned, installed and latest version of each requirement, and whether it is outdated
    (the time-out counted from `started`, by default now)."""
    requirements = read_requirements(requirements_path)
    installed = {name: installed_version(name) for name, _ in requirements}
    latest = latest_versions(
        [name for name, _ in requirements],
        config.settings["package_index_url"],
        config.settings["dependency_timeout_seconds"],
        config.model_dir / DEPENDENCY_CACHE_FILE,
        started,
    )
    table = []
    for name, pinned in requirements:
        table.append(
            {
                "package": name,
                "pinned": pinned,
                "installed": installed[name],
                "latest": latest[name],
                "status": _dependency_state(installed[name], latest[name]),
            }
        )
    return table


def check_dependencies(
    config: Config,
    requirements_path: Path = REQUIREMENTS_FILE,
    pyproject_path: Path = vulnerabilities.PYPROJECT_FILE,
) -> tuple[list[dict], dict]:
    """The dependency table and the vulnerability check, both within the one time-out.

    Returns:
        The rows of `dependency_status`, each with `vulnerabilities` (the ids known for the
        installed release, [] for none, None when not checked), and the result of
        `vulnerabilities.check_vulnerabilities` over the installed direct and transitive
        dependencies of `pyproject_path`.
    """
    started = time.monotonic()
    found: dict = {}
    installed: dict[str, str] = {}

    def check() -> None:
        try:
            installed.update(
                vulnerabilities.installed_dependencies(
                    vulnerabilities.direct_dependencies(pyproject_path)
                )
            )
            found.update(
                vulnerabilities.check_vulnerabilities(
                    installed,
                    config.settings["package_index_url"],
                    config.settings["dependency_timeout_seconds"],
                    config.model_dir / vulnerabilities.VULNERABILITY_CACHE_FILE,
                    started,
                )
            )
        except Exception as error:  # a failed check is said, never a failed diagnostics run
            logger.warning("vulnerabilities not checked: %s", error)
            found.update(vulnerabilities.unchecked(installed, f"the check failed: {error}"))

    # check_vulnerabilities ends when the time-out that began at `started` does, as the lookup
    # of the latest versions does: both run at once within it.
    checking = threading.Thread(target=check, daemon=True)
    checking.start()
    table = dependency_status(config, requirements_path, started)
    checking.join()
    ids = {canonicalize_name(row["package"]): row["ids"] for row in found["vulnerable"]}
    unchecked = {canonicalize_name(row["package"]) for row in found["not_checked"]}
    checked = {canonicalize_name(name) for name in installed} - unchecked
    for row in table:
        name = canonicalize_name(row["package"])
        row["vulnerabilities"] = ids.get(name, []) if name in checked else None
    return table, found


def _dependency_state(installed: str | None, latest: str | None) -> str:
    if installed is None:
        return "not installed"
    if latest is None:
        return "unknown"
    try:
        return "outdated" if Version(installed) < Version(latest) else "up to date"
    except InvalidVersion:
        return "unknown"
