"""Wall time of `python diagnostics.py` and `python reporting.py` on the shipped data.

Works on a copy of the project's data in a temporary folder (nothing of the project's own is
written), after ingesting, training, scoring and deploying there. Diagnostics is timed with a cold
dependency cache (every package asked of the index), a warm one (answers from the day-old cache)
and with the index unreachable; the dependency check alone is timed the same three ways, in
process, so its share of the run can be read off. Medians of --repeats runs.

Usage: python bench/diagnostics_cost.py [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

from clientrisk.config import DIAGNOSTICS_FILE, load_config
from clientrisk.report import dependencies, vulnerabilities

UNREACHABLE_INDEX = "http://127.0.0.1:9/pypi"


def make_copy(root: Path, index_url: str | None = None) -> Path:
    for folder in ("sourcedata", "testdata"):
        shutil.copytree(PROJECT_DIR / folder, root / folder, dirs_exist_ok=True)
    config = json.loads((PROJECT_DIR / "config.json").read_text())
    if index_url:
        config["package_index_url"] = index_url
    path = root / "config.json"
    path.write_text(json.dumps(config))
    return path


def run_script(script: str, config: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, str(PROJECT_DIR / script), "--config", str(config)],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def median_time(action, repeats: int, before=None) -> float:
    times = []
    for _ in range(repeats):
        if before:
            before()
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="risk-bench-") as scratch:
        config_path = make_copy(Path(scratch))
        for step in ("ingestion.py", "training.py", "scoring.py", "deployment.py"):
            run_script(step, config_path)
        config = load_config(config_path)
        cache = config.model_dir / dependencies.DEPENDENCY_CACHE_FILE
        offline_path = make_copy(Path(scratch) / "offline", UNREACHABLE_INDEX)
        offline_config = load_config(offline_path)
        shutil.copytree(config.ingested_dir, offline_config.ingested_dir)
        shutil.copytree(config.model_dir, offline_config.model_dir)
        shutil.copytree(config.deploy_dir, offline_config.deploy_dir, symlinks=True)
        (offline_config.model_dir / dependencies.DEPENDENCY_CACHE_FILE).unlink(missing_ok=True)
        offline_vulnerabilities = (
            offline_config.model_dir / vulnerabilities.VULNERABILITY_CACHE_FILE
        )
        offline_vulnerabilities.unlink(missing_ok=True)

        def clear_cache():
            cache.unlink(missing_ok=True)
            (config.model_dir / vulnerabilities.VULNERABILITY_CACHE_FILE).unlink(missing_ok=True)

        rows = [
            (
                "python diagnostics.py, cold cache",
                median_time(
                    lambda: run_script("diagnostics.py", config_path), args.repeats, clear_cache
                ),
                median_time(
                    lambda: dependencies.check_dependencies(config), args.repeats, clear_cache
                ),
            ),
            (
                "python diagnostics.py, warm cache",
                median_time(lambda: run_script("diagnostics.py", config_path), args.repeats),
                median_time(lambda: dependencies.check_dependencies(config), args.repeats),
            ),
            (
                "python diagnostics.py, index unreachable",
                median_time(lambda: run_script("diagnostics.py", offline_path), args.repeats),
                median_time(lambda: dependencies.check_dependencies(offline_config), args.repeats),
            ),
            (
                "python reporting.py",
                median_time(lambda: run_script("reporting.py", config_path), args.repeats),
                0.0,
            ),
        ]
        timings = json.loads((config.model_dir / DIAGNOSTICS_FILE).read_text())
    print(f"median of {args.repeats} runs; diagnostics times no step again (no --time-on-copy)")
    print(f"{'command':<42} {'wall s':>7} {'dependency check s':>19} {'share':>6}")
    for name, wall, deps in rows:
        print(f"{name:<42} {wall:>7.2f} {deps:>19.2f} {deps / wall:>6.0%}")
    recorded = ", ".join(timings["timings"]) or "none (the steps were run by hand)"
    print(f"step timings reported, as recorded by fullprocess.py runs: {recorded}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
