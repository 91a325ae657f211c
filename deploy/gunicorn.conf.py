"""gunicorn settings for the tardist API: `gunicorn -c deploy/gunicorn.conf.py wsgi:app` from the deployment root.

Command-line options override these (e.g. `--bind 127.0.0.1:8000`). nginx in
front buffers slow clients, so plain synchronous workers are the right kind.
"""

import multiprocessing

bind = "127.0.0.1:8000"  # or "unix:/run/tardist/gunicorn.sock"; must match @GUNICORN@ in nginx.conf
workers = 2 * multiprocessing.cpu_count() + 1
timeout = 30  # /info/<kind> of every repository takes well under a second; anything longer is stuck
graceful_timeout = 10
accesslog = "-"  # stdout, for the process supervisor's log
errorlog = "-"
# gunicorn >= 25.1 opens a control socket at one per-user path; a second instance on the host would clash.
control_socket_disable = True
