"""Settings gunicorn reads when started in this folder (`gunicorn wsgi:app`); options given on the
command line win. Both logs go to stderr, one line per request in the access log.

The workers share their request counts for `GET /metrics` through files in a folder of their
own (PROMETHEUS_MULTIPROC_DIR, made fresh at each start unless set, removed at exit).
"""

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


def child_exit(server, worker):
    """A worker that ended no longer counts in the live gauges."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _made_here:
        shutil.rmtree(_made_here, ignore_errors=True)
