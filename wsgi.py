"""The WSGI entry point for a production server: `gunicorn wsgi:app`.

The config file is taken from the RISK_CONFIG environment variable (default: config.json beside
the scripts); a relative path is relative to the server's working folder.
"""

import os

from app import CONFIG_ENV, create_app

app = create_app(os.environ.get(CONFIG_ENV) or None)
