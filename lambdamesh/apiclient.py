"""The registry API from the command line: one request, its answer, and the exit code a
script can rely on. Standard library only, so the operator commands work from a plain
`pip install lambdamesh`.

Exit codes: 0 done; 2 the command itself is wrong (no URL or token, a bad file); 3 not found
(404); 4 refused (any other 4xx: the token, the input; or a redirect); 5 the registry failed
(5xx) or could not be reached.

A redirect is never followed: urllib's would send the bearer token on to whatever host the
``Location`` names, and the registry API never redirects, so a 3xx means ``--url`` points
somewhere else.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from chalicelib.errors import LambdaMeshError

TIMEOUT_SECONDS = 15.0
EXIT_NOT_FOUND = 3
EXIT_REFUSED = 4
EXIT_FAILED = 5
# Answers that would send the client elsewhere.
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class ApiError(LambdaMeshError):
    """The registry's refusal or failure, with the exit code that says which."""

    def __init__(self, message: str, exit_code: int, api_code: str | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.api_code = api_code


class UsageError(LambdaMeshError):
    code = "command_error"


@dataclass(frozen=True)
class Api:
    url: str
    token: str
    timeout: float = TIMEOUT_SECONDS

    @classmethod
    def from_options(
        cls, url: str | None, token: str | None, environ: Mapping[str, str] = os.environ
    ) -> Api:
        url = url or environ.get("LAMBDAMESH_URL")
        token = token or environ.get("LAMBDAMESH_TOKEN")
        if not url:
            raise UsageError("no registry URL: pass --url or set LAMBDAMESH_URL")
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
            raise UsageError(f"--url {url!r} is not an http(s) URL")
        if not token:
            raise UsageError(
                "no token: pass --token or set LAMBDAMESH_TOKEN (`lambdamesh token --admin`)"
            )
        return cls(url.rstrip("/"), token)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """The answer's JSON (None for 204), or ApiError with the API's code and message."""
        data = None if body is None else json.dumps(body).encode()
        # The scheme was checked to be http(s) in from_options.
        request = urllib.request.Request(  # noqa: S310
            self.url + path,
            data=data,
            method=method,
            headers={
                "Authorization": f"Bearer {self.token}",
                "Accept": "application/json",
                **({"Content-Type": "application/json"} if data is not None else {}),
            },
        )
        opener = urllib.request.build_opener(_NoRedirects())
        try:
            with opener.open(request, timeout=self.timeout) as answer:
                raw = answer.read()
        except urllib.error.HTTPError as exc:
            if exc.code in _REDIRECTS:
                raise _redirected(exc.code, exc.headers.get("Location")) from None
            raise _refusal(exc.code, exc.read()) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ApiError(f"cannot reach {self.url}: {reason}", EXIT_FAILED) from None
        return json.loads(raw) if raw else None


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """In place of urllib's redirect handler: a redirect is answered as it came."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def segment(value: str) -> str:
    """A path segment as sent: anything that is not a name character is escaped."""
    return quote(value, safe="")


def _redirected(status: int, location: str | None) -> ApiError:
    where = " ".join((location or "nowhere").split())[:200]
    return ApiError(
        f"registry_redirected: the registry URL answered {status}, a redirect to {where}, "
        "which is never followed (it would take the token elsewhere): pass the registry API's "
        "own address as --url or LAMBDAMESH_URL",
        EXIT_REFUSED,
        "registry_redirected",
    )


def _refusal(status: int, raw: bytes) -> ApiError:
    try:
        error = json.loads(raw)["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        code, message = f"http_{status}", raw[:200].decode("utf-8", "replace") or f"HTTP {status}"
    if status == 404:
        exit_code = EXIT_NOT_FOUND
    elif status < 500:
        exit_code = EXIT_REFUSED
    else:
        exit_code = EXIT_FAILED
    return ApiError(f"{code}: {message}", exit_code, code)
