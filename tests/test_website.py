"""The personal website in website/: pages, links, data file, health check and server settings.

The app is loaded from its file path (website/ is not a package), so this runs from the project root.
"""

from __future__ import annotations

import http.client
import importlib.metadata
import importlib.util
import json
import os
import re
import runpy
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from types import ModuleType
from typing import Any, cast
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from deployer.steps.ecs import SCRATCH_PATH, SITE_HEALTH_CHECK, SITE_USER

WEBSITE_DIR = Path(__file__).resolve().parent.parent / "website"
SITE_FILE = WEBSITE_DIR / "site.toml"
HEALTHCHECK = WEBSITE_DIR / "healthcheck.py"
GUNICORN_CONF = WEBSITE_DIR / "gunicorn.conf.py"
NAV_PATHS = ("/", "/about", "/projects")


def load_module(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


website = load_module("website_app", WEBSITE_DIR / "app.py")
SITE_DATA = tomllib.loads(SITE_FILE.read_text(encoding="utf-8"))
OWNER = SITE_DATA["owner"]["name"]
TAGLINE = SITE_DATA["owner"]["tagline"]
PAGE_TITLES = {
    "/": f"{OWNER} — {TAGLINE}",
    "/about": f"About — {OWNER}",
    "/projects": f"Projects — {OWNER}",
}


@dataclass
class Page:
    """What the tests look at in a page's HTML."""

    title: str = ""
    lang: str | None = None
    meta: dict[str, str] = field(default_factory=dict)
    links: list[str] = field(default_factory=list)  # every href and src
    nav_links: list[str] = field(default_factory=list)
    current: list[str] = field(default_factory=list)  # hrefs marked aria-current="page"
    images: list[dict[str, str | None]] = field(default_factory=list)
    headings: list[int] = field(default_factory=list)
    stylesheets: list[str] = field(default_factory=list)
    scripts: list[str] = field(default_factory=list)


class PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.page = Page()
        self._in_title = False
        self._nav_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "html":
            self.page.lang = attributes.get("lang")
        elif tag == "title":
            self._in_title = True
        elif tag == "nav":
            self._nav_depth += 1
        elif tag == "meta" and attributes.get("name"):
            self.page.meta[str(attributes["name"])] = attributes.get("content") or ""
        elif tag == "img":
            self.page.images.append(attributes)
        elif tag == "script":
            self.page.scripts.append(attributes.get("src") or "(inline)")
        elif tag == "link" and attributes.get("rel") == "stylesheet":
            self.page.stylesheets.append(attributes.get("href") or "")
        elif re.fullmatch(r"h[1-6]", tag):
            self.page.headings.append(int(tag[1]))
        for name in ("href", "src"):
            value = attributes.get(name)
            if value is not None:
                self.page.links.append(value)
        if tag == "a" and self._nav_depth and attributes.get("href"):
            self.page.nav_links.append(str(attributes["href"]))
        if attributes.get("aria-current") == "page":
            self.page.current.append(attributes.get("href") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag == "nav":
            self._nav_depth -= 1

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.page.title += data


def parse(html: str) -> Page:
    parser = PageParser()
    parser.feed(html)
    parser.close()
    return parser.page


def is_internal(url: str) -> bool:
    return url.startswith("/") and not url.startswith("//")


@pytest.fixture(autouse=True)
def plain_http(monkeypatch: pytest.MonkeyPatch) -> None:
    """The site as it runs without a domain, whatever the environment running the tests holds."""
    for name in ("SITE_DOMAIN", "REDIRECT_PORT"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def app() -> Flask:
    return cast(Flask, website.create_app())


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


# --- pages -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", NAV_PATHS)
def test_page_answers_with_its_title_and_the_owner(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    page = parse(html)
    assert page.title.strip() == PAGE_TITLES[path]
    assert OWNER in html.replace(page.title, "")  # the name is in the body too, not only the title


@pytest.mark.parametrize("path", NAV_PATHS)
def test_page_has_the_navigation_and_marks_itself_current(client: FlaskClient, path: str) -> None:
    page = parse(client.get(path).get_data(as_text=True))
    assert set(NAV_PATHS) <= set(page.nav_links)
    assert page.current == [path]


@pytest.mark.parametrize("path", [*NAV_PATHS, "/no-such-page"])
def test_page_is_accessible_html(client: FlaskClient, path: str) -> None:
    page = parse(client.get(path).get_data(as_text=True))
    assert page.lang == "en"
    assert "width=device-width" in page.meta.get("viewport", "")
    assert page.meta.get("description") == TAGLINE
    for image in page.images:
        assert (image.get("alt") or "").strip(), f"image without alt text: {image}"
    assert page.headings.count(1) == 1, "one <h1> per page"
    assert page.headings[0] == 1
    for before, after in zip(page.headings, page.headings[1:], strict=False):
        assert after <= before + 1, f"heading levels skip: {page.headings}"


def test_home_page_shows_the_avatar(client: FlaskClient) -> None:
    page = parse(client.get("/").get_data(as_text=True))
    avatars = [image for image in page.images if image.get("src") == "/static/img/avatar.svg"]
    assert len(avatars) == 1
    assert avatars[0]["alt"] == SITE_DATA["owner"]["avatar_alt"]


def test_every_internal_link_on_every_page_resolves(client: FlaskClient) -> None:
    to_visit = [*NAV_PATHS, "/no-such-page"]
    seen: set[str] = set()
    checked: dict[str, int] = {}
    while to_visit:
        path = to_visit.pop()
        if path in seen:
            continue
        seen.add(path)
        response = client.get(path)
        if response.mimetype != "text/html":
            continue
        for link in parse(response.get_data(as_text=True)).links:
            if is_internal(link) and link not in checked:
                checked[link] = client.get(link).status_code
                to_visit.append(link)
    assert checked, "no internal link found"
    assert {"/", "/about", "/projects", "/static/css/site.css", "/static/img/favicon.svg"} <= set(checked)
    assert {link: status for link, status in checked.items() if status != 200} == {}


@pytest.mark.parametrize("path", [*NAV_PATHS, "/no-such-page"])
def test_nothing_is_fetched_from_another_site(client: FlaskClient, path: str) -> None:
    page = parse(client.get(path).get_data(as_text=True))
    assert page.stylesheets and all(is_internal(href) for href in page.stylesheets)
    assert all(is_internal(str(image.get("src"))) for image in page.images)
    assert page.scripts == []


def test_stylesheet_imports_nothing_from_outside() -> None:
    css = (WEBSITE_DIR / "static" / "css" / "site.css").read_text(encoding="utf-8")
    assert "@import" not in css
    assert "@font-face" not in css
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", css)


@pytest.mark.parametrize(
    ("path", "mimetype"),
    [
        ("/static/css/site.css", "text/css"),
        ("/static/img/avatar.svg", "image/svg+xml"),
        ("/static/img/favicon.svg", "image/svg+xml"),
    ],
)
def test_static_files_are_served_with_their_type(client: FlaskClient, path: str, mimetype: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.mimetype == mimetype
    assert response.get_data() == (WEBSITE_DIR / path.lstrip("/")).read_bytes()


def test_unknown_path_gets_the_friendly_404_page(client: FlaskClient) -> None:
    response = client.get("/this/page/does-not-exist")
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    page = parse(html)
    assert page.title.strip() == f"Page not found — {OWNER}"
    assert "This page does not exist" in html
    assert "/" in page.links  # a way back home
    assert set(NAV_PATHS) <= set(page.nav_links)


def test_healthz_answers_ok_json(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.is_json
    assert response.get_json() == {"status": "ok"}
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("path", ["/", "/healthz", "/no-such-page", "/static/css/site.css"])
def test_responses_carry_security_headers(client: FlaskClient, path: str) -> None:
    headers = client.get(path).headers
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
    assert headers["Cross-Origin-Resource-Policy"] == "same-origin"
    policy = dict(item.strip().split("=", 1) for item in headers["Permissions-Policy"].split(","))
    for feature in ("camera", "microphone", "geolocation", "payment", "usb", "interest-cohort"):
        assert policy[feature] == "()", feature


def test_contact_links_are_on_the_about_page(client: FlaskClient) -> None:
    links = parse(client.get("/about").get_data(as_text=True)).links
    for contact in SITE_DATA["contacts"]:
        assert contact["url"] in links


def test_every_bio_paragraph_is_on_the_about_page(client: FlaskClient) -> None:
    html = client.get("/about").get_data(as_text=True)
    for paragraph in SITE_DATA["owner"]["bio"]:
        assert f"<p>{paragraph}</p>" in html


# --- debug mode ------------------------------------------------------------------------------------


def test_app_is_not_in_debug_mode(app: Flask) -> None:
    assert website.app.debug is False
    assert app.debug is False
    assert app.config["DEBUG"] is False


def test_flask_debug_in_the_environment_does_not_turn_debug_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLASK_DEBUG", "1")
    assert website.create_app().debug is False


def test_no_source_file_enables_debug() -> None:
    for path in WEBSITE_DIR.rglob("*.py"):
        assert not re.search(r"debug\s*=\s*True", path.read_text(encoding="utf-8")), path


# --- the data file drives the content --------------------------------------------------------------


def test_projects_from_the_data_file_are_on_the_projects_page(client: FlaskClient) -> None:
    html = client.get("/projects").get_data(as_text=True)
    assert SITE_DATA["projects"], "the shipped site.toml lists projects"
    for project in SITE_DATA["projects"]:
        assert project["title"] in html
        assert project["description"] in html
        for tag in project.get("tags", []):
            assert f"<li>{tag}</li>" in html


CUSTOM_SITE = """
[owner]
name = "Ada Example"
tagline = "Builds <b>bold</b> things"
bio = ["First paragraph about Ada.", "Second paragraph about Ada."]

[[contacts]]
label = "Mastodon"
url = "https://social.example/@ada"

[[projects]]
title = "Difference Engine"
description = "Computes tables without errors."
link = "https://example.org/engine"
tags = ["Brass", "Gears"]

[[projects]]
title = "Analytical Notes"
description = "No link for this one."

[[projects]]
title = "Third"
description = "Third project."

[[projects]]
title = "Fourth"
description = "Fourth project, only on /projects."
"""


@pytest.fixture
def custom_client(tmp_path: Path) -> FlaskClient:
    path = tmp_path / "site.toml"
    path.write_text(CUSTOM_SITE, encoding="utf-8")
    return cast(FlaskClient, website.create_app(path).test_client())


def test_another_data_file_changes_names_titles_and_projects(custom_client: FlaskClient) -> None:
    about = custom_client.get("/about").get_data(as_text=True)
    assert parse(about).title.strip() == "About — Ada Example"
    assert "Your Name" not in about
    assert "Second paragraph about Ada." in about
    assert "https://social.example/@ada" in parse(about).links

    projects = custom_client.get("/projects").get_data(as_text=True)
    for title in ("Difference Engine", "Analytical Notes", "Third", "Fourth"):
        assert title in projects
    assert '<a href="https://example.org/engine">Difference Engine</a>' in projects
    assert "Analytical Notes</a>" not in projects  # no link given, none drawn
    assert "<li>Gears</li>" in projects


def test_home_page_shows_the_first_three_projects(custom_client: FlaskClient) -> None:
    home = custom_client.get("/").get_data(as_text=True)
    assert "Difference Engine" in home and "Third" in home
    assert "Fourth project" not in home
    assert "All 4 projects" in home


def test_text_from_the_data_file_is_escaped(custom_client: FlaskClient) -> None:
    home = custom_client.get("/").get_data(as_text=True)
    assert "Builds &lt;b&gt;bold&lt;/b&gt; things" in home
    assert "<b>bold</b>" not in home


def test_site_file_environment_variable_picks_the_data_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "elsewhere.toml"
    path.write_text(CUSTOM_SITE, encoding="utf-8")
    monkeypatch.setenv("SITE_FILE", str(path))
    html = website.create_app().test_client().get("/").get_data(as_text=True)
    assert "Ada Example" in html


MINIMAL_OWNER = '[owner]\nname = "A"\ntagline = "B"\nbio = ["C"]\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name = ", "is not valid TOML"),
        ("[contacts]\n", "is missing the key(s) owner"),
        ('[owner]\nname = ""\ntagline = "B"\nbio = ["C"]\n', "owner.name must be a non-empty string"),
        ('[owner]\nname = "A"\nbio = ["C"]\n', "[owner] is missing the key(s) tagline"),
        ('[owner]\nnmae = "A"\nname = "A"\ntagline = "B"\nbio = ["C"]\n', "unknown key(s) nmae"),
        ('[owner]\nname = "A"\ntagline = "B"\nbio = []\n', "owner.bio must hold at least one string"),
        ('[owner]\nname = "A"\ntagline = "B"\nbio = "C"\n', "owner.bio must be an array of strings"),
        (MINIMAL_OWNER + 'avatar = "../app.py"\n', "owner.avatar must name a file inside"),
        (MINIMAL_OWNER + 'avatar = "img/missing.png"\n', "owner.avatar must name a file inside"),
        (MINIMAL_OWNER + '[[contacts]]\nlabel = "X"\nurl = "javascript:alert(1)"\n', "contacts[0].url must start"),
        (MINIMAL_OWNER + '[[contacts]]\nlabel = "X"\nurl = "//evil.example"\n', "contacts[0].url must start"),
        (MINIMAL_OWNER + '[projects]\ntitle = "T"\n', "projects must be an array of tables"),
        (
            MINIMAL_OWNER + '[[projects]]\ntitle = "T"\ndescription = "D"\n[[projects]]\ndescription = "D"\n',
            "projects[1] is missing the key(s) title",
        ),
        (MINIMAL_OWNER + '[[projects]]\ntitle = "T"\ndescription = "D"\ntags = "x"\n', "projects[0].tags must be"),
        (MINIMAL_OWNER + '[[projects]]\ntitle = "T"\ndescription = "D"\ntags = [1]\n', "projects[0].tags[0] must"),
    ],
)
def test_a_bad_data_file_is_refused_with_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "site.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(website.SiteConfigError) as caught:
        website.create_app(path)
    assert message in str(caught.value)
    assert str(path) in str(caught.value)


def test_a_missing_data_file_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.toml"
    with pytest.raises(website.SiteConfigError, match="does not exist"):
        website.create_app(path)


def test_a_minimal_data_file_is_enough(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text(MINIMAL_OWNER, encoding="utf-8")
    client = website.create_app(path).test_client()
    for page in NAV_PATHS:
        assert client.get(page).status_code == 200
    assert "No projects listed yet." in client.get("/projects").get_data(as_text=True)


# --- https on the user's domain: the redirect port and HSTS ---------------------------------------

DOMAIN = "www.example.com"
HSTS = "max-age=31536000"
# werkzeug's EnvironBuilder writes SERVER_PORT from base_url after applying environ_base (werkzeug/test.py
# get_environ), so the port a request "arrived on" is set with environ_overrides, as gunicorn sets it.
ON_REDIRECT_PORT = {"SERVER_PORT": "8081"}
ON_MAIN_PORT = {"SERVER_PORT": "8080"}


@pytest.fixture
def https_client(monkeypatch: pytest.MonkeyPatch) -> FlaskClient:
    """The site as the deployer runs it on a domain: SITE_DOMAIN set, PORT and REDIRECT_PORT their defaults."""
    monkeypatch.setenv("SITE_DOMAIN", DOMAIN)
    monkeypatch.delenv("PORT", raising=False)
    return cast(FlaskClient, website.create_app().test_client())


@pytest.mark.parametrize(
    ("target", "location"),
    [
        ("/", "/"),
        ("/about", "/about"),
        ("/some/path?q=1", "/some/path?q=1"),
        ("/some/path?q=1&r=a+b&s=%2F", "/some/path?q=1&r=a+b&s=%2F"),
        ("/some/path?", "/some/path"),
        ("/healthz", "/healthz"),  # the NLB's TCP health check only connects: no 200 needed here
        ("/static/css/site.css", "/static/css/site.css"),
        ("/no-such-page", "/no-such-page"),
        ("/caf%C3%A9/100%25", "/caf%C3%A9/100%25"),  # percent-encoded once, as sent
        ("/a%0D%0ASet-Cookie:x=1", "/a%0D%0ASet-Cookie:x=1"),  # no header injection
    ],
)
def test_the_redirect_port_sends_every_request_to_https_on_the_domain(
    https_client: FlaskClient, target: str, location: str
) -> None:
    response = https_client.get(target, environ_overrides=ON_REDIRECT_PORT)
    assert response.status_code == 301
    assert response.headers["Location"] == f"https://{DOMAIN}{location}"
    assert "Set-Cookie" not in response.headers
    assert len(response.get_data()) < 200


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "PUT", "OPTIONS"])
def test_the_redirect_answers_every_method(https_client: FlaskClient, method: str) -> None:
    response = https_client.open("/about?x=1", method=method, environ_overrides=ON_REDIRECT_PORT)
    assert response.status_code == 301
    assert response.headers["Location"] == f"https://{DOMAIN}/about?x=1"
    if method == "HEAD":
        assert response.get_data() == b""


@pytest.mark.parametrize("target", ["/x", "//evil.example/x", "http://evil.example/x"])
def test_the_redirect_ignores_the_host_header(https_client: FlaskClient, target: str) -> None:
    """No open redirect: neither the Host header nor an absolute or scheme-relative target picks the host."""
    response = https_client.get(
        target,
        base_url="http://evil.example:8081",
        headers={"Host": "evil.example", "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"},
        environ_overrides=ON_REDIRECT_PORT,
    )
    assert response.status_code == 301
    assert urlsplit(response.headers["Location"])[:2] == ("https", DOMAIN)


def test_the_redirect_carries_no_hsts_but_the_security_headers(https_client: FlaskClient) -> None:
    """RFC 6797 section 7.2: no Strict-Transport-Security over plain http."""
    headers = https_client.get("/", environ_overrides=ON_REDIRECT_PORT).headers
    assert "Strict-Transport-Security" not in headers
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Content-Type"].startswith("text/plain")


@pytest.mark.parametrize("path", ["/", "/about", "/healthz", "/static/css/site.css", "/no-such-page"])
def test_every_answer_on_the_main_port_carries_hsts(https_client: FlaskClient, path: str) -> None:
    response = https_client.get(path, environ_overrides=ON_MAIN_PORT)
    assert response.status_code == (404 if path == "/no-such-page" else 200)
    assert response.headers["Strict-Transport-Security"] == HSTS
    assert "Location" not in response.headers


def test_the_redirect_port_follows_redirect_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SITE_DOMAIN", DOMAIN)
    monkeypatch.setenv("PORT", "9090")
    monkeypatch.setenv("REDIRECT_PORT", "9091")
    client = website.create_app().test_client()
    assert client.get("/x", environ_overrides={"SERVER_PORT": "9091"}).status_code == 301
    main = client.get("/", environ_overrides={"SERVER_PORT": "9090"})
    assert main.status_code == 200 and main.headers["Strict-Transport-Security"] == HSTS
    assert client.get("/", environ_overrides=ON_REDIRECT_PORT).status_code == 200  # 8081 is nothing special now


def test_an_upper_case_domain_redirects_in_lower_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SITE_DOMAIN", "WWW.Example.COM")
    client = website.create_app().test_client()
    assert client.get("/", environ_overrides=ON_REDIRECT_PORT).headers["Location"] == f"https://{DOMAIN}/"


@pytest.mark.parametrize("value", [None, "", "  "])
def test_without_a_domain_no_redirect_and_no_hsts(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is not None:
        monkeypatch.setenv("SITE_DOMAIN", value)
    monkeypatch.setenv("REDIRECT_PORT", "8081")
    client = website.create_app().test_client()
    for port in (ON_MAIN_PORT, ON_REDIRECT_PORT):
        for path in ("/", "/healthz", "/no-such-page"):
            response = client.get(path, environ_overrides=port)
            assert response.status_code in (200, 404), (port, path)
            assert "Location" not in response.headers
            assert "Strict-Transport-Security" not in response.headers


@pytest.mark.parametrize(
    "value",
    [
        "https://www.example.com",
        "www.example.com/",
        "www.example.com.",
        "www.example.com:443",
        "*.example.com",
        " www.example.com",
        "localhost",
        "192.0.2.1",
        "-www.example.com",
        "www_site.example.com",
        "www..example.com",
        f"{'a' * 64}.example.com",
        ".".join(["a" * 60] * 5),  # 304 characters
    ],
)
def test_a_bad_domain_stops_the_site_at_start_up(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("SITE_DOMAIN", value)
    with pytest.raises(website.SiteConfigError, match=r"SITE_DOMAIN=.* is not a DNS name"):
        website.create_app()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"REDIRECT_PORT": "http"}, "REDIRECT_PORT='http' is not a port number"),
        ({"REDIRECT_PORT": "0"}, "REDIRECT_PORT='0' is not a port number"),
        ({"REDIRECT_PORT": "70000"}, "REDIRECT_PORT='70000' is not a port number"),
        ({"REDIRECT_PORT": "8080"}, "REDIRECT_PORT=8080 is also PORT"),
        ({"PORT": "9000", "REDIRECT_PORT": "9000"}, "REDIRECT_PORT=9000 is also PORT"),
    ],
)
def test_a_bad_redirect_port_stops_the_site_at_start_up(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    monkeypatch.setenv("SITE_DOMAIN", DOMAIN)
    monkeypatch.delenv("PORT", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(website.SiteConfigError, match=re.escape(message)):
        website.create_app()


# --- the container health check script -------------------------------------------------------------


@contextmanager
def serve(wsgi_app: Callable[..., Any]) -> Iterator[int]:
    """Serve a WSGI app on 127.0.0.1 on a free port in a thread; yield the port."""
    server = make_server("127.0.0.1", 0, wsgi_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        thread.join(timeout=5)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def healthcheck_command() -> list[str]:
    """The task definition's health check command, run by this Python ("python" is the image's)."""
    kind, program, *arguments = SITE_HEALTH_CHECK["command"]
    assert (kind, program, arguments[-1]) == ("CMD", "python", "/app/healthcheck.py")
    return [sys.executable, *arguments[:-1], str(HEALTHCHECK)]


def run_healthcheck(port: int | str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PORT": str(port), **env}
    return subprocess.run(
        healthcheck_command(), env=environment, capture_output=True, text=True, timeout=20, check=False
    )


@contextmanager
def raw_server(answer: Callable[[socket.socket], None]) -> Iterator[int]:
    """A loopback listener whose first connection `answer` handles (in a thread); yield its port."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)

        def handle() -> None:
            connection, _ = listener.accept()
            with connection:
                answer(connection)

        thread = threading.Thread(target=handle, daemon=True)
        thread.start()
        yield listener.getsockname()[1]
        thread.join(timeout=10)


def test_healthcheck_passes_against_the_running_site(app: Flask) -> None:
    with serve(app) as port:
        result = run_healthcheck(port)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_healthcheck_fails_when_nothing_listens() -> None:
    result = run_healthcheck(free_port())
    assert result.returncode == 1
    assert "/healthz failed" in result.stderr
    assert "ConnectionRefusedError" in result.stderr


def test_healthcheck_fails_on_an_unhealthy_answer() -> None:
    @Request.application
    def unhealthy(request: Request) -> Response:
        return Response("down", status=503)

    with serve(unhealthy) as port:
        result = run_healthcheck(port)
    assert result.returncode == 1
    assert "answered 503" in result.stderr


def test_healthcheck_follows_no_redirect_and_uses_no_proxy() -> None:
    @Request.application
    def moved(request: Request) -> Response:
        return Response("", status=302, headers={"Location": "/"})

    with serve(moved) as port:
        result = run_healthcheck(port, http_proxy="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9")
    assert result.returncode == 1
    assert "answered 302" in result.stderr


def test_healthcheck_asks_healthz_over_http_1_0_with_host_and_user_agent() -> None:
    seen: list[Request] = []

    @Request.application
    def record(request: Request) -> Response:
        seen.append(request)
        return Response("ok")

    with serve(record) as port:
        result = run_healthcheck(port)
    assert result.returncode == 0, result.stderr
    [request] = seen
    assert (request.method, request.path, request.environ["SERVER_PROTOCOL"]) == ("GET", "/healthz", "HTTP/1.0")
    assert request.headers["Host"] == f"127.0.0.1:{port}"
    assert request.headers["User-Agent"] == "healthcheck"


def test_healthcheck_gives_up_after_its_timeout() -> None:
    with socket.socket() as listener:  # accepts connections (in the kernel) and never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        started = time.monotonic()
        result = run_healthcheck(listener.getsockname()[1])
        elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert "/healthz failed" in result.stderr and "TimeoutError" in result.stderr
    assert 2.5 < elapsed < 15


def test_healthcheck_timeout_bounds_the_whole_answer_not_each_read() -> None:
    def trickle(connection: socket.socket) -> None:  # a byte every half second: each read alone is quick
        connection.recv(4096)
        with suppress(OSError):  # the check hangs up on its deadline
            for byte in b"HTTP/1.0 200 OK\r\n":
                connection.sendall(bytes([byte]))
                time.sleep(0.5)

    started = time.monotonic()
    with raw_server(trickle) as port:
        result = run_healthcheck(port)
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert "TimeoutError" in result.stderr
    assert 2.5 < elapsed < 8


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"", "connection closed before a status line: b''"),
        (b"HTTP/1.0 200", "connection closed before a status line: b'HTTP/1.0 200'"),
        (b"SSH-2.0-OpenSSH_9.2\r\n", "not an HTTP status line: b'SSH-2.0-OpenSSH_9.2'"),
        (b"HTTP/1.1 2000 OK\r\n", "not an HTTP status line"),
        (b"x" * 5000, "no status line in the first"),
    ],
)
def test_healthcheck_fails_on_an_answer_with_no_status_line(answer: bytes, message: str) -> None:
    def reply(connection: socket.socket) -> None:
        connection.recv(4096)
        with suppress(OSError):  # the check may hang up before reading all of it
            connection.sendall(answer)

    with raw_server(reply) as port:
        result = run_healthcheck(port)
    assert result.returncode == 1
    assert message in result.stderr
    assert result.stderr.count("\n") == 1  # one line


def test_healthcheck_refuses_a_bad_port() -> None:
    result = run_healthcheck("eighty")
    assert result.returncode == 1
    assert "not a port number" in result.stderr


def test_healthcheck_fails_on_a_port_out_of_range() -> None:
    result = run_healthcheck(70000)
    assert result.returncode == 1
    assert "/healthz failed" in result.stderr


def imported_modules(*arguments: str) -> set[str]:
    """The modules a Python run imports, as -X importtime lists them on stderr."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", *arguments],
        env={**os.environ, "PORT": str(free_port())},
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    return {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}


def test_healthcheck_imports_only_what_it_names() -> None:
    """It runs every 10 s inside the task's CPU limit: no `site`, no socket, enum or http.client (see its docstring)."""
    flags = healthcheck_command()[1:-1]
    imported = imported_modules(*flags, str(HEALTHCHECK))
    assert imported == imported_modules(*flags, "-c", "import _socket, os, sys, time")
    assert not imported & {"site", "socket", "enum", "selectors", "http.client", "email.parser", "__future__"}


# --- gunicorn settings -----------------------------------------------------------------------------


def gunicorn_settings(monkeypatch: pytest.MonkeyPatch, **env: str | None) -> dict[str, Any]:
    for name, value in env.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    return runpy.run_path(str(GUNICORN_CONF))


def test_gunicorn_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = gunicorn_settings(monkeypatch, PORT=None, WEB_CONCURRENCY=None, GUNICORN_THREADS=None)
    assert settings["bind"] == "0.0.0.0:8080"
    assert settings["workers"] == 2
    assert settings["accesslog"] == "-"
    assert settings["errorlog"] == "-"
    assert 0 < settings["graceful_timeout"] < 30  # ECS sends SIGKILL 30 s after SIGTERM by default
    assert settings["preload_app"] is False
    if Path("/dev/shm").is_dir() and os.access("/dev/shm", os.W_OK):
        assert settings["worker_tmp_dir"] == "/dev/shm"
    else:
        assert settings["worker_tmp_dir"] == "/tmp"  # the task definition's one writable mount


def test_gunicorn_heartbeat_never_goes_to_the_read_only_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    assert gunicorn_settings(monkeypatch)["worker_tmp_dir"] == "/tmp"


def test_gunicorn_reads_port_and_web_concurrency(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = gunicorn_settings(monkeypatch, PORT="9090", WEB_CONCURRENCY="5")
    assert settings["bind"] == "0.0.0.0:9090"
    assert settings["workers"] == 5


@pytest.mark.parametrize(
    ("name", "value"), [("PORT", "http"), ("PORT", "70000"), ("WEB_CONCURRENCY", "0"), ("WEB_CONCURRENCY", "two")]
)
def test_gunicorn_refuses_bad_numbers(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    with pytest.raises(SystemExit, match=name):
        gunicorn_settings(monkeypatch, **{name: value})


def test_gunicorn_serves_the_site_and_stops_gracefully_on_sigterm(tmp_path: Path) -> None:
    """The container's command for real (when gunicorn is installed): serve, pass the check, stop on SIGTERM."""
    pytest.importorskip("gunicorn")
    port = free_port()
    env = {**os.environ, "PORT": str(port), "WEB_CONCURRENCY": "1"}
    command = [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", "app:app"]
    check = subprocess.run(
        [*command, "--check-config"], cwd=WEBSITE_DIR, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert check.returncode == 0, check.stderr

    stdout, stderr = tmp_path / "stdout", tmp_path / "stderr"
    with stdout.open("w") as out, stderr.open("w") as err:
        # Bound to loopback for the test; the image binds 0.0.0.0 (checked above through PORT).
        process = subprocess.Popen(
            [*command, "--bind", f"127.0.0.1:{port}"], cwd=WEBSITE_DIR, env=env, stdout=out, stderr=err
        )
    try:
        deadline = time.monotonic() + 30
        while run_healthcheck(port).returncode != 0:
            assert process.poll() is None, stderr.read_text()
            assert time.monotonic() < deadline, "gunicorn did not become healthy in 30 s"
            time.sleep(0.2)
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
            f"http://127.0.0.1:{port}/", timeout=5
        ) as response:
            assert response.status == 200
            assert OWNER in response.read().decode()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert '"GET / HTTP/1.1" 200' in stdout.read_text()
    log = stderr.read_text()
    assert "Handling signal: term" in log
    assert "Shutting down: Master" in log


@pytest.mark.parametrize(
    ("env", "bind"),
    [
        ({"SITE_DOMAIN": DOMAIN}, ["0.0.0.0:8080", "0.0.0.0:8081"]),
        ({"SITE_DOMAIN": DOMAIN, "PORT": "9090", "REDIRECT_PORT": "9091"}, ["0.0.0.0:9090", "0.0.0.0:9091"]),
        ({"SITE_DOMAIN": None, "REDIRECT_PORT": "9091"}, "0.0.0.0:8080"),  # exactly as without a domain
        ({"SITE_DOMAIN": "", "REDIRECT_PORT": "bad"}, "0.0.0.0:8080"),
    ],
)
def test_gunicorn_binds_the_redirect_port_only_with_a_domain(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str | None], bind: str | list[str]
) -> None:
    assert gunicorn_settings(monkeypatch, **{"PORT": None, **env})["bind"] == bind


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"REDIRECT_PORT": "http"}, "REDIRECT_PORT='http' is not a whole number"),
        ({"REDIRECT_PORT": "0"}, "REDIRECT_PORT=0 is outside"),
        ({"REDIRECT_PORT": "8080"}, "REDIRECT_PORT=8080 is also PORT"),
        ({"PORT": "9000", "REDIRECT_PORT": "9000"}, "REDIRECT_PORT=9000 is also PORT"),
    ],
)
def test_gunicorn_refuses_a_bad_redirect_port(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    with pytest.raises(SystemExit, match=re.escape(message)):
        gunicorn_settings(monkeypatch, **{"SITE_DOMAIN": DOMAIN, "PORT": None, **env})


def unredirected(
    port: int, target: str, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request to 127.0.0.1:port, redirects not followed and no proxy: status, headers, body."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request(method, target, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def test_real_gunicorn_redirects_by_the_port_a_request_arrived_on(tmp_path: Path) -> None:
    """gunicorn's own SERVER_PORT (the listening socket's), not the test client's: two loopback binds."""
    pytest.importorskip("gunicorn")
    port, redirect_port = free_port(), free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "REDIRECT_PORT": str(redirect_port),
        "SITE_DOMAIN": DOMAIN,
        "WEB_CONCURRENCY": "1",
    }
    binds = ["--bind", f"127.0.0.1:{port}", "--bind", f"127.0.0.1:{redirect_port}"]
    log = tmp_path / "gunicorn.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", *binds, "app:app"],
            cwd=WEBSITE_DIR,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while run_healthcheck(port).returncode != 0:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "gunicorn did not become healthy in 30 s"
            time.sleep(0.2)
        status, headers, _ = unredirected(redirect_port, "/some/path?q=1", "HEAD")
        assert (status, headers["Location"]) == (301, f"https://{DOMAIN}/some/path?q=1")
        status, headers, body = unredirected(redirect_port, "/healthz", headers={"Host": "evil.example"})
        assert (status, headers["Location"]) == (301, f"https://{DOMAIN}/healthz")
        assert "Strict-Transport-Security" not in headers
        status, headers, body = unredirected(port, "/healthz")
        assert (status, body) == (200, b'{"status":"ok"}\n')
        assert headers["Strict-Transport-Security"] == HSTS
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_real_gunicorn_stops_at_boot_on_a_bad_domain() -> None:
    """A bad SITE_DOMAIN fails the worker's boot, and gunicorn exits saying why: no request is ever served."""
    pytest.importorskip("gunicorn")
    env = {**os.environ, "SITE_DOMAIN": "https://www.example.com", "WEB_CONCURRENCY": "1"}
    port, redirect_port = free_port(), free_port()
    binds = ["--bind", f"127.0.0.1:{port}", "--bind", f"127.0.0.1:{redirect_port}"]
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", *binds, "app:app"],
        cwd=WEBSITE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "SITE_DOMAIN='https://www.example.com' is not a DNS name" in result.stderr
    assert "Worker failed to boot" in result.stderr


# --- packaging -------------------------------------------------------------------------------------


def requirements() -> dict[str, str]:
    pins: dict[str, str] = {}
    for raw in (WEBSITE_DIR / "requirements.txt").read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and version, f"not pinned with ==: {line}"
            pins[name.strip().lower()] = version.strip()
    return pins


def test_requirements_are_pinned_and_complete() -> None:
    pins = requirements()
    assert {"flask", "gunicorn", "werkzeug", "jinja2", "markupsafe", "itsdangerous", "click", "blinker"} <= set(pins)
    for name, version in pins.items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # gunicorn, where the test environment lacks it
        assert installed == version, f"{name}: tests run {installed}, the image pins {version}"


def test_dockerfile_follows_the_rules() -> None:
    lines = [
        line.strip()
        for line in (WEBSITE_DIR / "Dockerfile").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert lines[0] == "ARG BASE_IMAGE=python:3.12-slim"
    assert lines[1] == "FROM ${BASE_IMAGE}"
    text = "\n".join(lines)
    assert "python3 -m venv /opt/venv" in text
    assert "/opt/venv/bin/pip install --no-cache-dir" in text
    assert "PATH=/opt/venv/bin:$PATH" in text
    requirements_copy = text.index("COPY requirements.txt")
    assert requirements_copy < text.index("pip install") < text.index("COPY . /app")
    users = [line for line in lines if line.startswith("USER ")]
    assert len(users) == 1 and re.fullmatch(r"USER [1-9][0-9]*:[1-9][0-9]*", users[0])
    # The task definition runs the built site as this same user, with /tmp its one writable volume.
    assert users[0] == f"USER {SITE_USER}"
    assert 'VOLUME ["/tmp"]' in lines and SCRATCH_PATH == "/tmp"
    assert "EXPOSE 8080" in lines
    assert "WORKDIR /app" in lines
    assert lines[-1] == 'CMD ["gunicorn", "--config", "gunicorn.conf.py", "app:app"]'
    # `docker run` checks health as the task does: the same flags and script, the venv's Python.
    kind, _, *arguments = SITE_HEALTH_CHECK["command"]
    assert f"{kind} {json.dumps(['/opt/venv/bin/python', *arguments])}" in lines
    assert not re.search(r"\b(gcc|build-essential|useradd|apt-get install)\b", text)


def test_dockerignore_keeps_caches_and_tests_out() -> None:
    ignored = (WEBSITE_DIR / ".dockerignore").read_text(encoding="utf-8").split()
    for pattern in ("**/__pycache__", "**/.git", "tests", "**/.venv", "**/.pytest_cache"):
        assert pattern in ignored
