"""What the service's own policy asks of its inbound port: the mutual TLS mode and the
intentions, read from the service's routing view (where the registry has filled in the stage's
defaults) and re-read every ``refresh_seconds`` with its ETag.

The first read must succeed before the inbound port serves. After it, a registry that cannot
be reached leaves the last word in force (logged once when reads start failing and once when
they recover): a mode or an intention never lapses to something laxer for want of an answer.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import NamedTuple

from lambdamesh_routing.intentions import Decision, decide
from lambdamesh_routing.policy import Intentions
from lambdamesh_routing.wire import parse_mesh, parse_view
from lambdamesh_sidecar.client import RegistryError, ViewAnswer
from lambdamesh_sidecar.logs import LOGGER_NAME, fields

Fetch = Callable[[str, str | None], ViewAnswer]


class Rules(NamedTuple):
    mtls: str
    intentions: Intentions | None
    intentions_default: str

    @property
    def strict(self) -> bool:
        return self.mtls == "strict"

    def decide(self, caller: str | None, method: str, path: str) -> Decision:
        return decide(self.intentions, self.intentions_default, caller, method, path)


class OwnPolicy:
    def __init__(
        self,
        fetch: Fetch,
        service: str,
        refresh_seconds: float,
        logger: logging.Logger | None = None,
    ) -> None:
        self._fetch = fetch
        self._service = service
        self._refresh_seconds = refresh_seconds
        self._log = logger or logging.getLogger(LOGGER_NAME)
        self._etag: str | None = None
        self._rules: Rules | None = None
        self._failing = False

    @property
    def rules(self) -> Rules:
        """The rules in force; ``read`` must have succeeded once."""
        assert self._rules is not None, "read the policy first"
        return self._rules

    def read(self) -> Rules:
        """Read the view now; ``RegistryError`` when the registry does not answer with one,
        ``ValueError`` when what it answered is not a view of this service."""
        answer = self._fetch(self._service, self._etag)
        if not answer.unchanged:
            policy = parse_view(self._service, answer.document).policy
            mesh = parse_mesh(answer.document)
            rules = Rules(
                mesh.mtls, None if policy is None else policy.intentions, mesh.intentions_default
            )
            if rules != self._rules:
                self._log.info(
                    "inbound rules %s",
                    fields(
                        service=self._service,
                        mtls=rules.mtls,
                        intentions=0 if rules.intentions is None else len(rules.intentions.rules),
                        default=rules.intentions_default,
                    ),
                )
            self._rules = rules
            self._etag = answer.etag
        assert self._rules is not None
        return self._rules

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self._refresh_seconds):
            try:
                self.read()
            except (RegistryError, ValueError) as exc:
                if not self._failing:
                    self._failing = True
                    self._log.warning(
                        "own policy not read; the last one stays in force %s",
                        fields(service=self._service, error=getattr(exc, "message", str(exc))),
                    )
                continue
            if self._failing:
                self._failing = False
                self._log.info("own policy read again %s", fields(service=self._service))
