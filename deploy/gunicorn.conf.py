"""gunicorn settings for the tardist API: `gunicorn -c deploy/gunicorn.conf.py wsgi:app` from the deployment root.

Command-line options override these (e.g. `--bind 127.0.0.1:8000`). nginx in
front buffers slow clients; threads are there for on-demand builds: a request
for a missing current-head tarball waits up to `build_wait` seconds (mostly
asleep) for `tardist worker`, and with threads such waits hold one thread each,
not a whole worker process. At most `build_waiters` (4) such waits per worker process are
in progress at once; beyond that the app answers 503 with Retry-After at once, so the other
threads stay free for the API.
"""

import multiprocessing

bind = "127.0.0.1:8000"  # or "unix:/run/tardist/gunicorn.sock"; must match @GUNICORN@ in nginx.conf
workers = 2 * multiprocessing.cpu_count() + 1
threads = 8  # gthread workers: see above
# With threads, a worker is restarted only when its main loop stops answering for this long,
# not when one request (an on-demand build waiting build_wait seconds) takes a while.
timeout = 30
graceful_timeout = 10
accesslog = "-"  # stdout, for the process supervisor's log
errorlog = "-"
# gunicorn >= 25.1 opens a control socket at one per-user path; a second instance on the host would clash.
control_socket_disable = True
