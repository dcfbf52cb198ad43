"""The WSGI entry point for a production server: `gunicorn wsgi:app`.

The config file is the one named by the RISK_CONFIG environment variable, else config.json beside
the scripts; a relative path is relative to the server's working folder. Under gunicorn, the
app's log lines go to gunicorn's error log (`gunicorn.conf.py` also turns on its access log).
"""

from clientrisk.api.app import create_app, use_gunicorn_logging

use_gunicorn_logging()
app = create_app()
