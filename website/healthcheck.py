"""Container health check: exit 0 when the site answers 200 on /healthz, 1 otherwise.

Standard library only, since slim images have no curl. ECS task definition health check:
    "healthCheck": {"command": ["CMD", "python", "/app/healthcheck.py"], ...}
It asks http://127.0.0.1:${PORT:-8080}/healthz with a 3 second timeout, directly (no proxy,
no redirects followed).
"""

from __future__ import annotations

import http.client
import os
import sys

TIMEOUT_SECONDS = 3.0


def main() -> int:
    raw_port = os.environ.get("PORT", "").strip() or "8080"
    try:
        port = int(raw_port)
    except ValueError:
        print(f"healthcheck: PORT={raw_port!r} is not a port number", file=sys.stderr)
        return 1
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_SECONDS)
    try:
        connection.request("GET", "/healthz", headers={"User-Agent": "healthcheck"})
        status = connection.getresponse().status
    except (OSError, http.client.HTTPException, ValueError, OverflowError) as error:
        print(f"healthcheck: http://127.0.0.1:{port}/healthz failed: {error!r}", file=sys.stderr)
        return 1
    finally:
        connection.close()
    if status != 200:
        print(f"healthcheck: http://127.0.0.1:{port}/healthz answered {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
