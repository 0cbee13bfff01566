"""The inbound port: callers (other sidecars' outbound ports, the gateway) connect to the
task's registered port, where the sidecar ends their mutual TLS, checks who they are against
the service's policy, and calls the app on ``127.0.0.1`` behind it.

For each connection:

1. Its first byte says whether it is TLS (a handshake record, 0x16) or plain HTTP. A TLS
   handshake must finish within ``identity.HANDSHAKE_SECONDS``, with the sidecar's current
   certificate; a certificate the caller presents must chain to the mesh CA and be valid, or
   the handshake fails and the connection is closed.
2. The caller's identity is the one the certificate names for this mesh and stage
   (``lambdamesh_routing.identity``); a caller with no certificate, or plain text, has none.
   TLS checks the certificate at the handshake only, so a request that arrives once it has
   expired is the connection's last.

For each request on it, whose head must arrive whole within ``HEAD_SECONDS`` of its first
byte:

3. A ``strict`` service answers a caller with no identity 403 ``mtls_required``.
4. The intentions decide (``lambdamesh_routing.intentions``): a denied call is answered 403
   ``intention_denied`` and logged with both identities.
5. The body is read (up to ``WHOLE_BODY``), so that a caller sending it slowly holds no turn;
   then flow control (``admission``): beyond the app's concurrency and queue, 503
   ``sidecar_overloaded`` with ``Retry-After``.
6. The request goes to the app with the proxy header rules of ``lambdamesh_routing.forwarding``
   and the caller's identity in ``X-Forwarded-Client-Cert`` (Envoy's form,
   ``By=<this service>;URI=<the caller>``), which the port sets and never passes on from the
   caller, in any spelling; the app's answer streams back (``relay``).

Refused calls never reach the app. Nothing is retried: there is one app.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from typing import NamedTuple

from lambdamesh_routing import hosts
from lambdamesh_routing.errors import (
    BadRequest,
    ConnectFailed,
    ConnectLate,
    LambdaMeshError,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from lambdamesh_routing.forwarding import (
    downstream_headers,
    field_name,
    joined_fields,
    upstream_headers,
)
from lambdamesh_routing.hosts import resolve
from lambdamesh_routing.identity import Identity, peer_identity
from lambdamesh_routing.instances import Instance
from lambdamesh_sidecar.admission import Admission
from lambdamesh_sidecar.exchange import Body, Transport, reason
from lambdamesh_sidecar.identity import HANDSHAKE_SECONDS, IdentityKeeper
from lambdamesh_sidecar.inbound_settings import InboundSettings
from lambdamesh_sidecar.logs import LOGGER_NAME, fields
from lambdamesh_sidecar.mesh_policy import OwnPolicy
from lambdamesh_sidecar.messages import AnswerBroken, AppBodyFailed
from lambdamesh_sidecar.metrics import FAILED_STATUSES, CallMetrics
from lambdamesh_sidecar.relay import stream_answer
from lambdamesh_sidecar.serving import BoundedServer, HttpConnection
from lambdamesh_sidecar.upstreams import UpstreamPool

LOOPBACK = "127.0.0.1"
CLIENT_CERT_HEADER = "X-Forwarded-Client-Cert"
# The caller's fields never passed to the app, matched by ``field_name`` (``_`` read as
# ``-``, as servers that map fields to variables read it): the caller's identity is the
# port's word alone, and ``Expect`` is answered by the port.
# Never passed on from the caller: the identity is the port's word alone; the caller's Expect
# was answered here; and a method override would have the app run another method than the
# one the intentions decided on.
NOT_FORWARDED = frozenset(
    {
        CLIENT_CERT_HEADER.lower(),
        "expect",
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
    }
)
_TLS_HANDSHAKE = b"\x16"
# How long a request's head may take to arrive whole, from its first byte: a caller that
# sends it a byte at a time must not hold a connection for long.
HEAD_SECONDS = 10.0
# The app on loopback accepts at once or not at all.
APP_CONNECT_SECONDS = 2.0
# A request body up to this size is read whole before the request waits for a turn with the
# app, and sent with a Content-Length; a longer one streams to the app under its turn, framed
# as the caller framed it (its Content-Length, or chunked).
WHOLE_BODY = 64 * 1024


class MtlsRequired(LambdaMeshError):
    status = 403
    code = "mtls_required"


class IntentionDenied(LambdaMeshError):
    status = 403
    code = "intention_denied"


class _Deadline(NamedTuple):
    deadline: float

    def try_deadline(self) -> float:
        return self.deadline


class InboundPort:
    """The inbound port's checks and its way to the app; ``serve`` binds the port."""

    def __init__(
        self,
        settings: InboundSettings,
        app_port: int,
        keeper: IdentityKeeper,
        policy: OwnPolicy,
        logger: logging.Logger | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        metrics: CallMetrics | None = None,
    ) -> None:
        """``wall_clock``: the time certificates' validity is read against; ``metrics``:
        where each call's figures go."""
        credentials = keeper.current
        assert credentials is not None, "the inbound port needs the service's certificate"
        self.settings = settings
        self.metrics = metrics
        self.keeper = keeper
        self.policy = policy
        self.clock = clock
        self.wall_clock = wall_clock
        self.log = logger or logging.getLogger(LOGGER_NAME)
        self.admission = Admission(
            settings.max_concurrency, settings.max_queue, settings.queue_seconds
        )
        self.pool = UpstreamPool()
        # The app, on loopback: the one address this transport may reach.
        self.transport = Transport(
            self.pool,
            hosts.address_policy(allow_loopback=True, allow_private=False, allowed_networks=()),
            resolve,
            clock,
            APP_CONNECT_SECONDS,
        )
        self.app = _app(credentials.identity.name, app_port)

    def serve(self, host: str = "0.0.0.0") -> InboundServer:  # noqa: S104 - the task's port
        """Bind ``host:settings.port`` (``OSError`` if taken); serve with ``serve_forever``."""
        return InboundServer((host, self.settings.port), self)


def _app(service: str, port: int) -> Instance:
    return Instance(
        service=service,
        instance_id="app",
        version="app",
        host=LOOPBACK,
        port=port,
        weight=1,
        zone=None,
        metadata={},
        status="UP",
        lease_seconds=0,
        expires_at=float("inf"),
        registered_at=0.0,
        updated_at=0.0,
    )


class InboundServer(BoundedServer):
    port_name = "inbound port"

    def __init__(self, address: tuple[str, int], inbound: InboundPort) -> None:
        self.inbound = inbound
        super().__init__(address, _Connection, inbound.settings.max_connections)

    def server_close(self) -> None:
        super().server_close()
        self.inbound.pool.close()


class _Connection(HttpConnection):
    """One caller's connection: TLS or plain, then its requests, one after another."""

    server: InboundServer
    port_name = "inbound port"

    def setup(self) -> None:
        self.head_seconds = HEAD_SECONDS
        self.peer: Identity | None = None
        self.own: Identity | None = None
        # When the caller's certificate expires (seconds since the epoch).
        self.peer_expires: float | None = None
        self.secure = False
        self.refused: str | None = None
        try:
            self._accept()
            super().setup()
        except (ssl.SSLError, OSError) as exc:
            # A failed handshake has closed the connection (``wrap_socket`` took it over).
            self.refused = reason(exc)

    def _accept(self) -> None:
        """Ends the caller's TLS, if it speaks TLS: ``self.request`` becomes the TLS socket."""
        sock = self.request
        sock.settimeout(HANDSHAKE_SECONDS)
        if sock.recv(1, socket.MSG_PEEK) != _TLS_HANDSHAKE:
            return
        credentials = self.server.inbound.keeper.current
        assert credentials is not None
        self.own = credentials.identity
        tls = credentials.server.wrap_socket(sock, server_side=True)  # the handshake, timed
        self.request, self.secure = tls, True
        certificate = tls.getpeercert()
        self.peer = peer_identity(certificate, self.own.trust_domain, self.own.stage)
        if self.peer is not None and certificate:
            self.peer_expires = ssl.cert_time_to_seconds(str(certificate["notAfter"]))

    def finish(self) -> None:
        """The TLS socket closed: the server closes the socket it accepted, whose descriptor
        the TLS socket took over."""
        if self.secure:
            self.server.shutdown_request(self.request)

    def handle(self) -> None:
        if self.refused is not None:
            self.server.inbound.log.info(
                "inbound connection refused %s",
                fields(caller_address=self.client_address[0], reason=self.refused),
            )
            return
        super().handle()

    def serve_request(self, rid: str) -> None:
        inbound = self.server.inbound
        started = time.monotonic()
        status, failed = 0, False
        try:
            status = self._checked_call(rid)
        except LambdaMeshError as error:
            status, failed = error.status, error.status in FAILED_STATUSES
            raise
        finally:
            if inbound.metrics is not None and status:
                caller = None if self.peer is None else self.peer.name
                inbound.metrics.record("in", caller, status, time.monotonic() - started, failed)

    def _checked_call(self, rid: str) -> int:
        """The checks, then the call to the app; the status the app answered."""
        inbound = self.server.inbound
        rules = inbound.policy.rules
        caller = None if self.peer is None else self.peer.name
        service = inbound.app.service
        if rules.strict and self.peer is None:
            self._log_refusal(rid, "mtls_required", "no mesh certificate")
            raise MtlsRequired(
                f"service {service!r} takes calls over mutual TLS with a mesh certificate only"
            )
        decision = rules.decide(caller, self.head.method, self.head.target)
        if not decision.allowed:
            self._log_refusal(rid, "intention_denied", decision.reason)
            raise IntentionDenied(decision.reason)
        if self.peer_expires is not None and inbound.wall_clock() >= self.peer_expires:
            # TLS checked the certificate at the handshake only: the connection ends with this
            # request, and the caller's next one comes on a new connection, renewed.
            self.close_connection = True
        call = _InboundCall(self, inbound, rid)
        body = call.body()  # what is kept of it, before a turn: a slow sender holds none
        with inbound.admission.turn():
            return call.run(body)

    def _log_refusal(self, rid: str, code: str, why: str) -> None:
        self.server.inbound.log.warning(
            "inbound call refused %s",
            fields(
                request_id=rid,
                error=code,
                caller=None if self.peer is None else self.peer.uri,
                caller_address=self.client_address[0],
                callee=None if self.own is None else self.own.uri,
                method=self.head.method,
                reason=why,
            ),
        )


class _InboundCall:
    """One request handed to the app, and its answer relayed."""

    def __init__(self, conn: _Connection, inbound: InboundPort, rid: str) -> None:
        self.conn = conn
        self.inbound = inbound
        self.rid = rid

    def run(self, body: Body) -> int:
        """The status the app answered with."""
        conn, inbound = self.conn, self.inbound
        head = conn.head
        if not head.target.startswith("/"):
            raise BadRequest("the inbound port takes a path (origin-form) as the request target")
        outgoing = upstream_headers(
            joined_fields(head.fields),
            client_ip=conn.client_address[0],
            proto="https" if conn.secure else "http",
            request_id=self.rid,
            trusted_edge=False,
        )
        outgoing = {k: v for k, v in outgoing.items() if field_name(k) not in NOT_FORWARDED}
        if conn.peer is not None and conn.own is not None:
            outgoing[CLIENT_CERT_HEADER] = f"By={conn.own.uri};URI={conn.peer.uri}"
        timeout = inbound.settings.timeout_seconds
        deadline = _Deadline(inbound.clock() + timeout)
        try:
            exchange = inbound.transport.send(
                deadline, inbound.app, head.method, head.target, outgoing, body
            )
        except (ConnectFailed, ConnectLate) as exc:
            raise UpstreamUnreachable(f"the app did not take the call: {exc.message}") from None
        except AppBodyFailed:
            raise
        except TimeoutError:
            raise UpstreamTimeout(f"the app did not answer within {timeout:g} s") from None
        except (OSError, AnswerBroken) as exc:
            raise UpstreamUnreachable(f"the app's answer broke: {reason(exc)}") from None
        headers = downstream_headers(
            exchange.answer.head.fields, self.rid, head=head.method == "HEAD"
        )
        cut = stream_answer(conn, exchange, inbound.transport, headers, timeout)
        if cut is not None:
            inbound.log.warning("app answer cut short %s", fields(request_id=self.rid, reason=cut))
        return exchange.answer.head.status

    def body(self) -> Body:
        """The body, or its first ``WHOLE_BODY`` bytes and a stream of the rest."""
        stream = self.conn.body()
        if stream is None:
            self.conn.body_read = True
            return Body(b"")
        kept = bytearray()
        for part in stream:
            kept += part
            if len(kept) > WHOLE_BODY:
                return Body(bytes(kept), self._rest(stream), self.conn.head.announced_length())
        self.conn.body_read = True
        return Body(bytes(kept))

    def _rest(self, stream: Iterator[bytes]) -> Iterator[bytes]:
        yield from stream
        self.conn.body_read = True
