"""Settings gunicorn reads when started in this folder (`gunicorn wsgi:app`); options given on the
command line win. Both logs go to stderr, one line per request in the access log."""

accesslog = "-"
errorlog = "-"
loglevel = "info"
