"""The personal website: a small Flask application whose content lives in site.toml.

Run it in production with gunicorn (see gunicorn.conf.py): ``gunicorn --config gunicorn.conf.py app:app``.
Run it locally with ``flask --app app run`` from this folder. Debug mode is never switched on here.

Environment: SITE_FILE (the data file), and on the user's domain SITE_DOMAIN (the name the site answers
on, e.g. www.example.com) with REDIRECT_PORT (default 8081; PORT, default 8080, is the main port). The
load balancer terminates TLS and forwards to PORT, and forwards plain http (port 80) to REDIRECT_PORT;
it forwards TCP and adds no X-Forwarded-Proto, so the port a request arrived on is the only sign of
plain http. With SITE_DOMAIN set, every request on REDIRECT_PORT gets a permanent redirect to
https://SITE_DOMAIN, and every answer on the main port carries Strict-Transport-Security. Without it,
neither.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn
from urllib.parse import quote

from flask import Flask, Response, jsonify, render_template, request
from werkzeug.exceptions import NotFound

HERE = Path(__file__).resolve().parent
DEFAULT_SITE_FILE = HERE / "site.toml"
STATIC_DIR = HERE / "static"
URL_PREFIXES = ("https://", "http://", "mailto:", "/")

# Everything the pages need comes from this origin: no script, font or stylesheet from elsewhere.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'none'; "
    "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
PERMISSIONS_POLICY = (
    "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), "
    "payment=(), usb=(), interest-cohort=()"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    # No powerful browser feature for this page or anything it embeds (W3C Permissions Policy,
    # https://www.w3.org/TR/permissions-policy/; the empty list `()` disables a feature everywhere).
    "Permissions-Policy": PERMISSIONS_POLICY,
    # A window opened from elsewhere gets no handle on ours, and our responses are not loadable by
    # other sites' pages (MDN: Cross-Origin-Opener-Policy, Cross-Origin-Resource-Policy).
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


DEFAULT_PORT = 8080
DEFAULT_REDIRECT_PORT = 8081
# HSTS for one year, for this host only (RFC 6797 section 6.1: https://www.rfc-editor.org/rfc/rfc6797).
# No includeSubDomains: on an apex domain (example.com) it would force https on every other host of the
# user's zone (mail., intranet. ...), which this site does not serve and cannot vouch for (RFC 6797
# section 6.1.2). No preload: the preload list wants includeSubDomains on the registrable domain and is a
# browser-built-in commitment that takes months to undo (https://hstspreload.org/); the owner's choice.
HSTS = "max-age=31536000"
# A DNS name as the deployer accepts it for a domain: labels of letters, digits and '-' (not first or
# last), at least two labels, the last not all digits (no IP address), at most 253 characters
# (RFC 1123 section 2.1; ACM's RequestCertificate DomainName pattern without the wildcard).
_DNS_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_DNS_NAME = re.compile(rf"({_DNS_LABEL}\.)+(?![0-9]+$){_DNS_LABEL}")
MAX_DNS_NAME_LENGTH = 253
# Characters left as they are in the redirect's path and query: RFC 3986's unreserved and reserved
# sub-delimiters ('%' too in the query, which WSGI passes undecoded).
_PATH_SAFE = "/!$&'()*+,;=:@"
_QUERY_SAFE = _PATH_SAFE + "?%"


class SiteConfigError(Exception):
    """The site's data file or its environment is missing, unreadable, or does not describe a site."""


@dataclass(frozen=True)
class Https:
    """The site on the user's domain: plain http arrives on redirect_port and is sent to https://domain."""

    domain: str
    redirect_port: int


@dataclass(frozen=True)
class Link:
    label: str
    url: str


@dataclass(frozen=True)
class Project:
    title: str
    description: str
    link: str | None
    tags: tuple[str, ...]


@dataclass(frozen=True)
class Site:
    name: str
    tagline: str
    bio: tuple[str, ...]
    avatar: str
    avatar_alt: str
    contacts: tuple[Link, ...]
    projects: tuple[Project, ...]


class _Reader:
    """Checks one parsed data file, naming the file and the key in every complaint."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, problem: str) -> NoReturn:
        raise SiteConfigError(f"{self.path}: {where} {problem}. Fix the file and start the site again.")

    def table(self, value: object, where: str, allowed: set[str], required: set[str]) -> Mapping[str, object]:
        if not isinstance(value, dict):
            self.fail(where, f"must be a table, not {type(value).__name__}")
        unknown = sorted(set(value) - allowed)
        if unknown:
            self.fail(where, f"has unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")
        missing = sorted(required - set(value))
        if missing:
            self.fail(where, f"is missing the key(s) {', '.join(missing)}")
        return value

    def tables(self, value: object, where: str) -> list[object]:
        if not isinstance(value, list):
            self.fail(where, f"must be an array of tables ([[{where}]]), not {type(value).__name__}")
        return value

    def text(self, value: object, where: str) -> str:
        if not isinstance(value, str) or not value.strip():
            self.fail(where, f"must be a non-empty string, not {value!r}")
        return value.strip()

    def texts(self, value: object, where: str, *, allow_empty: bool) -> tuple[str, ...]:
        if not isinstance(value, list):
            self.fail(where, f"must be an array of strings, not {type(value).__name__}")
        if not value and not allow_empty:
            self.fail(where, "must hold at least one string")
        return tuple(self.text(item, f"{where}[{index}]") for index, item in enumerate(value))

    def url(self, value: object, where: str) -> str:
        url = self.text(value, where)
        if not url.startswith(URL_PREFIXES) or url.startswith("//"):
            self.fail(where, f"must start with {', '.join(URL_PREFIXES)}, not {url!r}")
        return url

    def static_file(self, value: object, where: str) -> str:
        relative = self.text(value, where)
        target = (STATIC_DIR / relative).resolve()
        if not target.is_relative_to(STATIC_DIR) or not target.is_file():
            self.fail(where, f"must name a file inside {STATIC_DIR}, and {relative!r} does not")
        return target.relative_to(STATIC_DIR).as_posix()


def load_site(path: Path) -> Site:
    """Read and validate the site's data file; raise SiteConfigError saying what is wrong and where."""
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise SiteConfigError(f"{path}: the site's data file does not exist.") from None
    except OSError as error:
        raise SiteConfigError(f"{path}: cannot be read ({error.strerror}).") from None
    except tomllib.TOMLDecodeError as error:
        raise SiteConfigError(f"{path}: is not valid TOML ({error}).") from None

    reader = _Reader(path)
    top = reader.table(data, "the file", {"owner", "contacts", "projects"}, {"owner"})
    owner = reader.table(
        top["owner"], "[owner]", {"name", "tagline", "bio", "avatar", "avatar_alt"}, {"name", "tagline", "bio"}
    )
    name = reader.text(owner["name"], "owner.name")

    contacts = []
    for index, item in enumerate(reader.tables(top.get("contacts", []), "contacts")):
        where = f"contacts[{index}]"
        contact = reader.table(item, where, {"label", "url"}, {"label", "url"})
        contacts.append(
            Link(reader.text(contact["label"], f"{where}.label"), reader.url(contact["url"], f"{where}.url"))
        )

    projects = []
    for index, item in enumerate(reader.tables(top.get("projects", []), "projects")):
        where = f"projects[{index}]"
        project = reader.table(item, where, {"title", "description", "link", "tags"}, {"title", "description"})
        link = project.get("link")
        projects.append(
            Project(
                title=reader.text(project["title"], f"{where}.title"),
                description=reader.text(project["description"], f"{where}.description"),
                link=None if link is None else reader.url(link, f"{where}.link"),
                tags=reader.texts(project.get("tags", []), f"{where}.tags", allow_empty=True),
            )
        )

    return Site(
        name=name,
        tagline=reader.text(owner["tagline"], "owner.tagline"),
        bio=reader.texts(owner["bio"], "owner.bio", allow_empty=False),
        avatar=reader.static_file(owner.get("avatar", "img/avatar.svg"), "owner.avatar"),
        avatar_alt=reader.text(owner.get("avatar_alt", f"Portrait of {name}"), "owner.avatar_alt"),
        contacts=tuple(contacts),
        projects=tuple(projects),
    )


def _port_from_env(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not re.fullmatch(r"[0-9]{1,5}", raw) or not 1 <= int(raw) <= 65535:
        raise SiteConfigError(f"{name}={raw!r} is not a port number (1..65535).")
    return int(raw)


def https_from_env() -> Https | None:
    """SITE_DOMAIN and REDIRECT_PORT, checked once at start-up; None when SITE_DOMAIN is unset or empty.

    A bad value stops the site from starting (gunicorn: "Worker failed to boot"), rather than
    redirecting visitors to a broken address.
    """
    raw = os.environ.get("SITE_DOMAIN", "")
    if not raw.strip():
        return None
    domain = raw.lower()
    if len(domain) > MAX_DNS_NAME_LENGTH or not _DNS_NAME.fullmatch(domain):
        raise SiteConfigError(
            f"SITE_DOMAIN={raw!r} is not a DNS name: give the name the site answers on, such as www.example.com, "
            "without scheme, port, path or trailing dot (or leave SITE_DOMAIN unset for no redirect)."
        )
    redirect_port = _port_from_env("REDIRECT_PORT", DEFAULT_REDIRECT_PORT)
    if redirect_port == _port_from_env("PORT", DEFAULT_PORT):
        raise SiteConfigError(f"REDIRECT_PORT={redirect_port} is also PORT: the redirect needs a port of its own.")
    return Https(domain=domain, redirect_port=redirect_port)


def https_location(domain: str, environ: Mapping[str, object]) -> str:
    """https://domain plus the request's path and query, re-encoded from the raw WSGI values.

    Always the configured domain, never the Host header, so no request can redirect elsewhere. WSGI
    hands path and query as bytes in latin-1 strings (PEP 3333): encoding them back gives the bytes the
    client sent, percent-encoded exactly once (control characters and spaces included).
    """
    path = f"{environ.get('SCRIPT_NAME', '')}{environ.get('PATH_INFO', '')}" or "/"
    location = f"https://{domain}{quote(path.encode('latin-1'), safe=_PATH_SAFE)}"
    query = str(environ.get("QUERY_STRING", ""))
    if query:
        location += f"?{quote(query.encode('latin-1'), safe=_QUERY_SAFE)}"
    return location


def _add_https(app: Flask, https: Https) -> None:
    """Redirect what arrived on the redirect port; mark what arrived on the main port with HSTS.

    The port is the listening socket's: gunicorn sets SERVER_PORT from the listener's getsockname() for
    TCP binds and uses the Host header only for unix sockets (gunicorn/http/wsgi.py `create()`,
    gunicorn 23.0.0; the gthread worker captures the listener's name once, workers/gthread.py).
    /healthz on the redirect port is redirected too: the load balancer's TCP health check only opens
    a connection and needs no 200.
    """
    port = str(https.redirect_port)

    def arrived_over_http() -> bool:
        return str(request.environ.get("SERVER_PORT")) == port

    @app.before_request
    def redirect_to_https() -> Response | None:
        if not arrived_over_http():
            return None
        # RFC 6797 section 7.2: a permanent redirect to the https URI, and no HSTS header over plain http
        # (browsers ignore it there anyway, section 8.1). A one-line body: HEAD gets none.
        location = https_location(https.domain, request.environ)
        return Response(f"Moved to {location}\n", status=301, mimetype="text/plain", headers={"Location": location})

    @app.after_request
    def add_hsts(response: Response) -> Response:
        if not arrived_over_http():
            response.headers["Strict-Transport-Security"] = HSTS
        return response


def create_app(site_file: str | os.PathLike[str] | None = None) -> Flask:
    """Build the application; the data file is site_file, else $SITE_FILE, else site.toml beside this file.

    SITE_DOMAIN (and REDIRECT_PORT) turn on the redirect to https and HSTS (see the module's docstring).
    """
    path = Path(site_file or os.environ.get("SITE_FILE") or DEFAULT_SITE_FILE)
    site = load_site(path)
    https = https_from_env()

    app = Flask(__name__, root_path=str(HERE))
    # Never debug: FLASK_DEBUG in the environment must not turn it on in production either.
    app.debug = False
    app.extensions["site"] = site
    if https is not None:
        _add_https(app, https)

    @app.context_processor
    def inject_site() -> dict[str, object]:
        return {"site": site, "year": datetime.now(UTC).year}

    @app.after_request
    def add_security_headers(response: Response) -> Response:
        for header, value in SECURITY_HEADERS.items():
            response.headers.setdefault(header, value)
        return response

    @app.get("/")
    def home() -> str:
        return render_template("home.html")

    @app.get("/about")
    def about() -> str:
        return render_template("about.html")

    @app.get("/projects")
    def projects() -> str:
        return render_template("projects.html")

    @app.get("/healthz")
    def healthz() -> Response:
        response = jsonify(status="ok")
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.errorhandler(404)
    def page_not_found(error: NotFound) -> tuple[str, int]:
        return render_template("404.html"), 404

    return app


app = create_app()
