"""The dashboard's two files, served by the app itself: no CDN, no build step.

The page is public and static; its data comes from the registry API with a token the operator
pastes, which the script keeps in the tab's session storage only. It is served only on the
console's own domain (``console.py``), where no upstream content is. The
Content-Security-Policy lets the page load its own script and call its own API, nothing else;
the opener and resource policies keep other origins from holding a handle on its window or
embedding its files.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

FILES = Path(__file__).with_name("dashboard")
CONTENT_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; connect-src 'self'; "
        "style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-cache",
}


def page(name: str) -> tuple[bytes, dict[str, str | list[str]]]:
    """The file's bytes and the headers to serve it with: a new dict each time, since the
    response (and the middleware, adding X-Request-Id) writes to it."""
    headers: dict[str, str | list[str]] = {"Content-Type": CONTENT_TYPES[name]}
    headers.update(SECURITY_HEADERS)
    return _read(name), headers


@cache
def _read(name: str) -> bytes:
    return (FILES / name).read_bytes()
