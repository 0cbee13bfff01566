"""The app as the functional tests drive it, in process and without a socket: the local
counterpart of ``chalice.test.Client`` (which this does not use), invoking through
``lambdamesh.invokers`` as API Gateway's REST proxy or as a function URL, one lane each.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from lambdamesh.events import HttpRequest
from lambdamesh.invokers import Answer, App, Invoker, UrlInvoker
from lambdamesh.projectconfig import ProjectConfig, patched_environ

__all__ = [
    "LANES",
    "Headers",
    "Lane",
    "TestClient",
    "TestHTTPClient",
    "TestResponse",
    "create_test_client",
]

# Which front door a test client plays: API Gateway's REST proxy, or a function URL.
Lane = Literal["rest", "url"]
LANES: tuple[Lane, ...] = ("rest", "url")


class Headers(Mapping[str, Any]):
    """Response headers by case-insensitive name: a string, or a list for a repeated one."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._pairs = list(pairs)
        self._names: dict[str, str] = {}
        for name, _ in pairs:
            self._names.setdefault(name.lower(), name)

    def get_all(self, name: str) -> list[str]:
        return [v for k, v in self._pairs if k.lower() == name.lower()]

    def __getitem__(self, name: str) -> Any:
        values = self.get_all(name)
        if not values:
            raise KeyError(name)
        return values[0] if len(values) == 1 else values

    def __iter__(self) -> Iterator[str]:
        return iter(self._names.values())

    def __len__(self) -> int:
        return len(self._names)

    def __repr__(self) -> str:
        return f"Headers({self._pairs!r})"


@dataclass(frozen=True)
class TestResponse:
    status_code: int
    headers: Headers
    body: bytes

    @property
    def json_body(self) -> Any:
        return json.loads(self.body)


class TestHTTPClient:
    """HTTP verbs in-process: each request is routed and invoked as API Gateway would,
    with the client's environment in ``os.environ`` while the app runs."""

    __test__ = False  # not a pytest test class

    def __init__(
        self, invoker: Callable[[HttpRequest], Answer], environment: Mapping[str, str]
    ) -> None:
        self._invoker = invoker
        self._environment = dict(environment)

    def request(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str] | None = None,
        body: bytes | str = b"",
    ) -> TestResponse:
        payload = body.encode("utf-8") if isinstance(body, str) else body
        request = HttpRequest(method.upper(), path, tuple((headers or {}).items()), payload)
        with patched_environ(self._environment):
            answer = self._invoker(request)
        return TestResponse(answer.status, Headers(answer.headers), answer.body)

    def get(self, path: str, **kwargs: Any) -> TestResponse:
        return self.request("GET", path, **kwargs)

    def head(self, path: str, **kwargs: Any) -> TestResponse:
        return self.request("HEAD", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> TestResponse:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> TestResponse:
        return self.request("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> TestResponse:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> TestResponse:
        return self.request("DELETE", path, **kwargs)

    def options(self, path: str, **kwargs: Any) -> TestResponse:
        return self.request("OPTIONS", path, **kwargs)


class TestClient:
    """The app as the functional tests drive it: ``client.http.get(...)`` and friends.

    The environment, like ``chalice.test.Client``'s, is ``.chalice/config.json``'s for the
    stage under the given ``environment_variables``, applied around each request, so clients
    open side by side each see their own. ``lane`` picks the event shape: ``"rest"`` routes
    as API Gateway does and sends its proxy event, ``"url"`` sends every request unrouted
    as a function URL does (payload format 2.0).
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        app: App,
        stage_name: str = "dev",
        project_dir: Path | str = ".",
        environment_variables: Mapping[str, str] | None = None,
        lane: Lane = "rest",
    ) -> None:
        config = ProjectConfig.load(Path(project_dir), stage_name)
        environment = {**config.environment_variables, **(environment_variables or {})}
        invoker: Callable[[HttpRequest], Answer]
        if lane == "url":
            invoker = UrlInvoker(app, timeout_seconds=config.lambda_timeout)
        else:
            invoker = Invoker(app, timeout_seconds=config.lambda_timeout)
        self.lane = lane
        self.http = TestHTTPClient(invoker, environment)

    def __enter__(self) -> TestClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None


def create_test_client(
    app: App,
    stage_name: str = "dev",
    environment_variables: Mapping[str, str] | None = None,
    lane: Lane = "rest",
) -> TestClient:
    """A test client for ``app``; use it as a context manager."""
    return TestClient(
        app, stage_name=stage_name, environment_variables=environment_variables, lane=lane
    )
