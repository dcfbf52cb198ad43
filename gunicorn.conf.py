"""Settings gunicorn reads when started in this folder (`gunicorn wsgi:app`); options given on the
command line win. Both logs go to stderr, one line per request in the access log.

The workers share their request counts for `GET /metrics` through files in a folder of their
own (PROMETHEUS_MULTIPROC_DIR, made fresh at each start unless set, removed at exit).
"""

import atexit
import os
import shutil
import tempfile

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
