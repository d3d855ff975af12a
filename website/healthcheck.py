"""Container health check: exit 0 when the site answers 200 on /healthz, 1 otherwise.

Standard library only, since slim images have no curl. ECS task definition health check:
    "healthCheck": {"command": ["CMD", "python", "-I", "-S", "/app/healthcheck.py"], ...}
It asks http://127.0.0.1:${PORT:-8080}/healthz directly (no proxy, no redirects followed) and
needs the status line within 3 seconds in all (connecting, sending, reading).

It runs every 10 seconds inside the task's CPU limit (a quarter of a CPU by default), so it is
kept cheap: `-I -S` skips the `site` import and its .pth files (the script needs only the
standard library, and `-I` also keeps /app off sys.path), and an HTTP/1.0 request on a raw
socket reads the status line instead of importing http.client (which pulls in the email package).
The socket is `_socket`, the C module under `socket` with the same socket methods: `socket`
itself adds enum, selectors and its IntEnum conversions, which cost more than all the rest of
the run; `_socket` is a built-in extension with no Python imports. Neither does this file import
`__future__`: it needs no postponed annotations. `python -X importtime -I -S healthcheck.py`
lists what it imports: 23 modules, 16 of them any Python's start-up.
"""

import _socket
import os
import sys
import time

TIMEOUT_SECONDS = 3.0
HOST = "127.0.0.1"
# HTTP/1.0: the server closes the connection after one answer, and sends no chunked body.
REQUEST = "GET /healthz HTTP/1.0\r\nHost: {host}:{port}\r\nUser-Agent: healthcheck\r\nConnection: close\r\n\r\n"
MAX_STATUS_LINE = 1024  # bytes read before giving up on a status line ("HTTP/1.1 200 OK\r\n" is 17)


class BadAnswerError(Exception):
    """An answer that is no HTTP status line, in one line."""


def status_line(port: int, deadline: float) -> bytes:
    """The first line of the site's answer to GET /healthz, each wait bounded by what is left of the timeout."""
    sock = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    try:  # `_socket.socket` is no context manager
        sock.settimeout(remaining(deadline))
        sock.connect((HOST, port))
        sock.settimeout(remaining(deadline))
        sock.sendall(REQUEST.format(host=HOST, port=port).encode("ascii"))
        received = b""
        while b"\n" not in received:
            if len(received) > MAX_STATUS_LINE:
                raise BadAnswerError(f"no status line in the first {len(received)} bytes: {received[:60]!r}")
            sock.settimeout(remaining(deadline))
            chunk = sock.recv(4096)
            if not chunk:
                raise BadAnswerError(f"connection closed before a status line: {received!r}")
            received += chunk
    finally:
        sock.close()
    return received.split(b"\n", 1)[0].rstrip(b"\r")


def remaining(deadline: float) -> float:
    """Seconds left before the deadline; a timeout once none is left."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError(f"no answer within {TIMEOUT_SECONDS:g} s")
    return left


def status_code(line: bytes) -> int:
    """The status code of an HTTP/1.x status line ("HTTP/1.1 200 OK")."""
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not (parts[1].isdigit() and len(parts[1]) == 3):
        raise BadAnswerError(f"not an HTTP status line: {line[:60]!r}")
    return int(parts[1])


def main() -> int:
    raw_port = os.environ.get("PORT", "").strip() or "8080"
    try:
        port = int(raw_port)
    except ValueError:
        print(f"healthcheck: PORT={raw_port!r} is not a port number", file=sys.stderr)
        return 1
    url = f"http://{HOST}:{port}/healthz"
    try:
        status = status_code(status_line(port, time.monotonic() + TIMEOUT_SECONDS))
    except (OSError, OverflowError, BadAnswerError) as error:
        print(f"healthcheck: {url} failed: {error!r}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"healthcheck: {url} answered {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
