"""The index at ``GET /``: the health dashboard for a browser, the list of routes as
JSON for everyone else; and the dashboard's own files, shipped in the package."""

from __future__ import annotations

from importlib import resources
from typing import Any

from bottle import request, response

from coordinator.http.endpoints import Endpoints, fail

__all__ = ["ASSETS", "install", "prefers_html"]

ASSETS = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
"""The dashboard's files under /dashboard/, and the type each is served with."""

_PAGE = "dashboard.html"
_ASSET_RULE = "/dashboard/<name>"
# The page loads nothing from elsewhere and runs no inline code: values from outside
# (signal ids, reasons) that slipped into the markup could not run either.
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def prefers_html(accept: str) -> bool:
    """True when the Accept header ranks text/html above application/json.

    No header, ``*/*`` or a tie keeps the JSON answer, so API clients that never
    thought about Accept get what they always got.
    """
    html = json = 0.0
    html_exact = json_exact = -1  # how specific the range that set each quality was
    for part in accept.split(","):
        media, *params = (item.strip() for item in part.split(";"))
        media = media.lower()
        quality = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = min(max(float(value), 0.0), 1.0)
                except ValueError:
                    quality = 0.0
        for target, specificity in (("text/html", 2), ("text/*", 1), ("*/*", 0)):
            if media == target and specificity > html_exact:
                html, html_exact = quality, specificity
        for target, specificity in (("application/json", 2), ("application/*", 1), ("*/*", 0)):
            if media == target and specificity > json_exact:
                json, json_exact = quality, specificity
    return html > json


def _read(name: str) -> bytes:
    return resources.files("coordinator.http").joinpath("static", name).read_bytes()


def install(endpoint: Endpoints) -> None:
    app = endpoint.app

    @endpoint("GET", "/")
    def index() -> Any:
        response.set_header("Vary", "Accept")
        if prefers_html(request.get_header("Accept", "")):
            response.content_type = "text/html; charset=utf-8"
            for header, value in _SECURITY_HEADERS.items():
                response.set_header(header, value)
            return _read(_PAGE)
        return {
            "service": "coordinator",
            "endpoints": sorted(
                {f"{r.method} {r.rule}" for r in app.routes if r.rule not in ("/", _ASSET_RULE)},
            ),
        }

    @endpoint("GET", _ASSET_RULE)
    def asset(name: str) -> bytes:
        content_type = ASSETS.get(name)
        if content_type is None:
            raise fail(404, f"no dashboard file named {name!r}")
        response.content_type = content_type
        for header, value in _SECURITY_HEADERS.items():
            response.set_header(header, value)
        return _read(name)
