"""The WSGI entry point for a production server: `gunicorn wsgi:app`.

The config file is the one named by the RISK_CONFIG environment variable, else config.json beside
the scripts; a relative path is relative to the server's working folder.
"""

from app import create_app

app = create_app()
