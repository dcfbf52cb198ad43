"""Wall time of the dependency check (outdated and vulnerable) against a local package index.

The index is a small server in a thread that answers PyPI's JSON API (`/NAME/json` for the
latest version, `/NAME/VERSION/json` for a release and its vulnerabilities) after --latency
seconds a request, as a distant index would. The check is timed with a cold cache (every
package asked), a warm one (answers from the day-old caches), with the index unreachable, and
with an index that hangs on one package. Medians of --repeats runs.

Usage: python bench/dependency_check_cost.py [--repeats N] [--latency S] [--timeout S]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

from clientrisk.config import SETTINGS, Config, load_config
from clientrisk.report import dependencies, vulnerabilities

UNREACHABLE_INDEX = "http://127.0.0.1:9/pypi"
HANGING_PACKAGE = "idna"


class IndexServer(ThreadingHTTPServer):
    request_queue_size = 128  # every lookup connects at once, as they do to a real index


def start_index(latency: float, hang: str | None = None) -> str:
    class Index(BaseHTTPRequestHandler):
        def do_GET(self):
            parts = self.path.strip("/").split("/")
            time.sleep(60 if parts[1] == hang else latency)
            version = parts[2] if len(parts) == 4 else "99.0"
            data = json.dumps({"info": {"version": version}, "vulnerabilities": []}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = IndexServer(("127.0.0.1", 0), Index)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/pypi"


def make_config(root: Path, index_url: str, timeout: float) -> Config:
    """The project's config, with the index and time-out given, in `root` (nothing of the
    project's own is written)."""
    settings = json.loads((PROJECT_DIR / "config.json").read_text(encoding="utf-8"))
    settings.update(package_index_url=index_url, dependency_timeout_seconds=timeout)
    (root / settings["input_folder_path"]).mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps(settings), encoding="utf-8")
    config = load_config(root / "config.json")
    config.model_dir.mkdir(parents=True, exist_ok=True)
    return config


def clear_caches(config: Config) -> None:
    (config.model_dir / dependencies.DEPENDENCY_CACHE_FILE).unlink(missing_ok=True)
    (config.model_dir / vulnerabilities.VULNERABILITY_CACHE_FILE).unlink(missing_ok=True)


def timed(config: Config, repeats: int, cold: bool) -> tuple[float, dict]:
    times, found = [], {}
    for _ in range(repeats):
        if cold:
            clear_caches(config)
        started = time.perf_counter()
        _, found = dependencies.check_dependencies(config)
        times.append(time.perf_counter() - started)
    return statistics.median(times), found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument(
        "--timeout", type=float, default=SETTINGS["dependency_timeout_seconds"].default
    )
    args = parser.parse_args()
    requirements = dependencies.read_requirements(dependencies.REQUIREMENTS_FILE)
    with tempfile.TemporaryDirectory(prefix="risk-bench-") as scratch:
        root = Path(scratch)
        index = start_index(args.latency)
        cases = [
            ("cold cache", make_config(root / "a", index, args.timeout), True),
            ("warm cache", make_config(root / "a", index, args.timeout), False),
            ("index unreachable", make_config(root / "b", UNREACHABLE_INDEX, args.timeout), True),
            (
                f"index hangs on {HANGING_PACKAGE}",
                make_config(root / "c", start_index(args.latency, HANGING_PACKAGE), args.timeout),
                True,
            ),
        ]
        print(
            f"{len(requirements)} locked packages; the index answers in {args.latency:g} s;"
            f" dependency_timeout_seconds {args.timeout:g}; median of {args.repeats} runs"
        )
        print(f"{'case':<22} {'wall s':>7} {'checked':>8}  vulnerabilities")
        for name, config, cold in cases:
            seconds, found = timed(config, args.repeats, cold)
            print(f"{name:<22} {seconds:>7.2f} {found['checked']:>8}  {found['in_words']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
