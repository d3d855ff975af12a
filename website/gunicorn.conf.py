"""gunicorn settings for the container (``gunicorn --config gunicorn.conf.py app:app``).

Environment: PORT (default 8080), WEB_CONCURRENCY (worker processes, default 2),
GUNICORN_THREADS (threads per worker, default 4), LOG_LEVEL (default info); on the user's domain
SITE_DOMAIN (the deployer sets it) and REDIRECT_PORT (default 8081, must differ from PORT).

With SITE_DOMAIN set, gunicorn also listens on REDIRECT_PORT, where the load balancer forwards plain
http (port 80) and the app answers every request with a redirect to https://SITE_DOMAIN (app.py
checks SITE_DOMAIN itself when a worker boots). Without it, only PORT.

Shutdown: gunicorn handles SIGTERM gracefully by default. On SIGTERM (what ECS sends when it stops
a task) the master stops accepting connections, lets each worker finish the requests it is serving
for up to graceful_timeout seconds, then exits 0. ECS waits stopTimeout (30 s by default) before it
sends SIGKILL, so graceful_timeout stays well below that. The image's CMD uses the exec form, so
gunicorn is PID 1 and receives the signal itself.
"""

from __future__ import annotations

import os


def _int_from_env(name: str, default: int, low: int, high: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"gunicorn.conf.py: {name}={raw!r} is not a whole number") from None
    if not low <= value <= high:
        raise SystemExit(f"gunicorn.conf.py: {name}={value} is outside {low}..{high}")
    return value


def _bind() -> str | list[str]:
    """PORT, plus REDIRECT_PORT when SITE_DOMAIN is set (gunicorn's bind takes a list of addresses)."""
    port = _int_from_env("PORT", 8080, 1, 65535)
    main = f"0.0.0.0:{port}"
    if not os.environ.get("SITE_DOMAIN", "").strip():
        return main
    redirect_port = _int_from_env("REDIRECT_PORT", 8081, 1, 65535)
    if redirect_port == port:
        raise SystemExit(f"gunicorn.conf.py: REDIRECT_PORT={redirect_port} is also PORT; give it a port of its own")
    return [main, f"0.0.0.0:{redirect_port}"]


# Listen on every interface: the load balancer reaches the task on its own IP (awsvpc networking).
bind = _bind()

# Fargate's smallest task (0.25 vCPU, 512 MiB) serves this site comfortably with 2 workers.
# Threaded workers keep a slow client from holding a whole worker: the Network Load Balancer
# passes TCP straight through and does not buffer requests the way an HTTP proxy would.
workers = _int_from_env("WEB_CONCURRENCY", 2, 1, 64)
worker_class = "gthread"
threads = _int_from_env("GUNICORN_THREADS", 4, 1, 64)

# Each worker imports the app itself; nothing is loaded in the master before the fork.
preload_app = False

# A worker silent for this long is killed and replaced.
timeout = 30
# Seconds given to in-flight requests after SIGTERM; below ECS's 30 s default stopTimeout.
graceful_timeout = 20
# Seconds an idle keep-alive connection stays open.
keepalive = 5

# Worker heartbeat files in memory (/dev/shm, a tmpfs in Docker) when it is writable, else in /tmp,
# the one writable place the task definition gives the read-only container (a bind mount on Fargate,
# a tmpfs in local mode). Never the read-only image layer. gunicorn's docs on worker_tmp_dir:
# https://docs.gunicorn.org/en/stable/settings.html#worker-tmp-dir
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else "/tmp"

# Logs go to stdout/stderr, where the awslogs driver collects them for CloudWatch.
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").strip().lower() or "info"
# The usual combined format plus the response time in milliseconds.
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(M)sms'
