"""The outbound port: the app calls ``http://127.0.0.1:{port}/{service}/{version}/{path}``
and the sidecar sends the request straight to a live instance of that service, inside the VPC.

The routing decisions are the gateway's own (``lambdamesh_routing``): the same routable
instances, aliases, strategies, ejection, retries and header rules, and the same JSON errors.
What differs is the transport, which streams:

* a request body of up to ``outbound_call.REPLAY_LIMIT`` bytes is kept, so an idempotent
  request may be sent again to another instance; a longer one streams through and is not
  retried once sent;
* an answer streams back as it arrives, except a 502/503/504 that may be retried, which is
  read (up to ``outbound_call.RETRY_ANSWER_LIMIT``) so that it can be returned if no retry
  happens;
* ``LAMBDAMESH_OUTBOUND_TIMEOUT_SECONDS`` (or the policy's) bounds connecting and each wait
  for the answer's head, retries included; once an answer streams, each read may wait as
  long again.

A call for a service or version its view does not know has the view read again at once
(``ViewSource.recheck``, bounded by the catalog) and is routed on what that says.

It listens on loopback only, needs no token from the app, and connects only to addresses the
gateway would, its settings read by the gateway's rule (``hosts.address_policy``): link-local,
metadata and multicast never; loopback, and private addresses within the allowed networks,
only when allowed. An address those settings refuse is the deployment's fault: 502
``upstream_not_allowed``, logged naming the sidecar's setting, and nothing ejected. Only
failures of an upstream count against it: a request the app framed badly, stopped sending or
sent too slowly for the upstream, a connect the call's deadline cut short, and an answer whose
header fields may not be relayed (the instance may have copied them from the request) are
answered (or dropped) without counting against the instance.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from lambdamesh_routing.errors import LambdaMeshError
from lambdamesh_routing.hosts import AddressPolicy, Resolver, resolve
from lambdamesh_routing.router import Router
from lambdamesh_sidecar.exchange import Transport
from lambdamesh_sidecar.logs import LOGGER_NAME
from lambdamesh_sidecar.metrics import FAILED_STATUSES, CallMetrics
from lambdamesh_sidecar.outbound_call import OutboundCall, ViewSource
from lambdamesh_sidecar.outbound_settings import OutboundSettings
from lambdamesh_sidecar.serving import BoundedServer, HttpConnection
from lambdamesh_sidecar.upstreams import UpstreamPool

if TYPE_CHECKING:
    from lambdamesh_sidecar.identity import Credentials

LOOPBACK = "127.0.0.1"


_DEFAULTS = OutboundSettings()


class OutboundProxy:
    """The outbound port's routing and transport; ``serve`` binds the loopback port."""

    def __init__(
        self,
        views: ViewSource,
        router: Router,
        address_policy: AddressPolicy,
        caller_address: str | None,
        settings: OutboundSettings = _DEFAULTS,
        resolver: Resolver = resolve,
        logger: logging.Logger | None = None,
        pool: UpstreamPool | None = None,
        credentials: Callable[[], Credentials | None] = lambda: None,
        metrics: CallMetrics | None = None,
    ) -> None:
        """``credentials``: this sidecar's certificate, for instances that take mutual TLS;
        ``metrics``: where each call's figures go."""
        self.metrics = metrics
        self.views = views
        self.router = router
        self.caller_address = caller_address
        self.settings = settings
        self.pool = pool or UpstreamPool()
        self.transport = Transport(
            self.pool,
            address_policy,
            resolver,
            router.clock,
            settings.connect_timeout_seconds,
            credentials,
        )
        self.log = logger or logging.getLogger(LOGGER_NAME)

    def serve(self, port: int) -> OutboundServer:
        """Bind ``127.0.0.1:port`` (``OSError`` if taken); serve with ``serve_forever``."""
        return OutboundServer((LOOPBACK, port), self)


class OutboundServer(BoundedServer):
    port_name = "outbound port"

    def __init__(self, address: tuple[str, int], outbound: OutboundProxy) -> None:
        self.outbound = outbound
        super().__init__(address, _Connection, outbound.settings.max_connections)

    def server_close(self) -> None:
        super().server_close()
        self.outbound.pool.close()


class _Connection(HttpConnection):
    """One connection from the app: its requests, one after another, each an
    ``OutboundCall``."""

    server: OutboundServer
    port_name = "outbound port"

    def serve_request(self, rid: str) -> None:
        outbound = self.server.outbound
        call = OutboundCall(self, outbound, rid)
        started = time.monotonic()
        status, failed = 0, False
        try:
            call.run()
            status = call.status or 0
        except LambdaMeshError as error:
            status, failed = error.status, error.status in FAILED_STATUSES
            raise
        finally:
            if outbound.metrics is not None and call.service is not None and status:
                seconds = time.monotonic() - started
                outbound.metrics.record("out", call.service, status, seconds, failed)
