"""The HTTP API: the Flask application, the dashboard, metrics, and the client apicalls.py uses."""
