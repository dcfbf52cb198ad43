"""Settings gunicorn reads when started in this folder (`gunicorn wsgi:app`); options given on the
command line win. The access log (one line per request) goes to stdout, the error log to stderr
(gunicorn reads "-" so for each).

Each worker serves its requests from a pool of threads, so that a few clients sending slowly
hold a few threads, not the whole server: the app gives a client `api_body_timeout_seconds` to
send its body (408 after). On a network the server still belongs behind a buffering reverse
proxy that terminates TLS (docs/api-and-dashboard.md, "On a network").

The workers share their request counts for `GET /metrics` through files in a folder of their
own (PROMETHEUS_MULTIPROC_DIR, made fresh at each start unless set, removed at exit).
"""

import atexit
import os
import shutil
import tempfile

workers = 2
worker_class = "gthread"
threads = 8
accesslog = "-"
errorlog = "-"
loglevel = "info"

if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="risk-metrics-")
    _made_here = os.environ["PROMETHEUS_MULTIPROC_DIR"]
else:
    _made_here = None
_master_pid = os.getpid()


def _remove_metrics_folder():
    """Remove the folder made here when the process that made it ends, however it ends (a start
    that fails never calls on_exit); never from a worker, which shares it while the server runs."""
    if _made_here and os.getpid() == _master_pid:
        shutil.rmtree(_made_here, ignore_errors=True)


atexit.register(_remove_metrics_folder)


def child_exit(server, worker):
    """A worker that ended no longer counts in the live gauges."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    _remove_metrics_folder()
