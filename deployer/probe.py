"""The one HTTP probe: a GET to a URL and what came back.

Three places ask "does the site answer?": status.py (the `Site …` line), the rollout
wait (done only once the URL answers 200) and local mode (waiting for the container's
/healthz). All three call `probe(url, timeout)` and read its `UrlAnswer`: the HTTP
status, or why there was none (refused, timed out, a garbled answer), and how long it
took. An error status (404, 503) is an answer, not a failure; nothing is raised.

`via`: an https URL can be asked through another host (the load balancer's DNS name): the
connection goes there, while the TLS handshake names the URL's host (SNI) and verifies the
certificate for it, and the request carries it as Host. That is the site answering on its
domain with a certificate that verifies, whatever the domain's DNS says yet (a record still
propagating, an NXDOMAIN this machine's resolver cached earlier, DNS managed elsewhere and
not set up). Such a request goes direct, never through a proxy, and follows no redirect.

Proxies: a loopback URL (127.0.0.0/8, ::1, localhost) is never sent through a proxy,
whatever the environment says (a proxy cannot reach this machine's loopback); any other
URL goes the way a visitor's browser on this machine would, through the environment's
proxy settings (HTTP(S)_PROXY, NO_PROXY), as urllib does by default.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_TIMEOUT = 5.0

_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no proxy at all


@dataclass
class UrlAnswer:
    """What a URL answered: an HTTP status, or why there was no answer."""

    url: str
    status: int | None = None
    error: str | None = None
    seconds: float = 0.0


Probe = Callable[[str], UrlAnswer]


def probe(url: str, timeout: float = DEFAULT_TIMEOUT, via: str | None = None) -> UrlAnswer:
    """One GET, as a visitor's browser would send it; an error status (404, 503) is an answer too."""
    if not url.startswith(("http://", "https://")):
        return UrlAnswer(url, error="not an http(s) URL")
    if via is not None:
        return _probe_via(url, via, timeout)
    open_url = _DIRECT.open if is_loopback(url) else urllib.request.urlopen  # urlopen: the environment's proxies
    started = time.monotonic()
    try:
        with open_url(url, timeout=timeout) as response:
            code = int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        code = exc.code
    except urllib.error.URLError as exc:
        return UrlAnswer(url, error=_no_answer(exc.reason, timeout), seconds=_since(started))
    except (OSError, http.client.HTTPException) as exc:  # timeouts, resets, a garbled answer
        return UrlAnswer(url, error=_no_answer(exc, timeout), seconds=_since(started))
    return UrlAnswer(url, status=code, seconds=_since(started))


class _ConnectVia(http.client.HTTPSConnection):
    """HTTPS to `address`, the handshake naming and verifying `server_name` (the URL's host)."""

    def __init__(self, address: str, server_name: str, port: int, timeout: float) -> None:
        self._tls = ssl.create_default_context()
        super().__init__(address, port, timeout=timeout, context=self._tls)
        self._server_name = server_name

    def connect(self) -> None:
        raw = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._tls.wrap_socket(raw, server_hostname=self._server_name)


def _probe_via(url: str, via: str, timeout: float) -> UrlAnswer:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        return UrlAnswer(url, error="only an https URL is asked through another host")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection = _ConnectVia(via, parts.hostname, parts.port or 443, timeout)
    started = time.monotonic()
    try:
        connection.request("GET", path, headers={"Host": parts.netloc})
        code = connection.getresponse().status
    except (OSError, http.client.HTTPException) as exc:  # refused, timed out, a certificate that does not verify
        return UrlAnswer(url, error=f"via {via}: {_no_answer(exc, timeout)}", seconds=_since(started))
    finally:
        connection.close()
    return UrlAnswer(url, status=code, seconds=_since(started))


def is_loopback(url: str) -> bool:
    """Whether the URL's host is this machine's loopback (which no proxy can reach)."""
    host = (urllib.parse.urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _no_answer(reason: object, timeout: float) -> str:
    if isinstance(reason, TimeoutError):
        return f"no answer within {timeout:g} s"
    return str(reason) or type(reason).__name__


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)
