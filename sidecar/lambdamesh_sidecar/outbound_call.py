"""One call from the app through the outbound port, from its request line to the end of its
answer: the route, the body kept for retries, the tries over the plan's instances (on the wire
through ``exchange``), and the answer streamed back to the app.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from lambdamesh_routing.attempts import TRY_FAILURES, failed, late, unreachable
from lambdamesh_routing.errors import (
    HostNotAllowed,
    LambdaMeshError,
    NotFound,
    ServiceNotFound,
    UpstreamTimeout,
    UpstreamUnreachable,
    VersionNotFound,
)
from lambdamesh_routing.forwarding import (
    downstream_headers,
    joined_fields,
    quote_target,
    rewrite_redirect,
    upstream_headers,
)
from lambdamesh_routing.instances import Instance, ServiceView
from lambdamesh_routing.names import check_name
from lambdamesh_routing.router import Call, Plan, Router
from lambdamesh_sidecar.exchange import Body, Exchange, Transport, read_upto, reason
from lambdamesh_sidecar.logs import fields
from lambdamesh_sidecar.messages import AnswerBroken, AppBodyFailed
from lambdamesh_sidecar.outbound_settings import OutboundSettings
from lambdamesh_sidecar.relay import Peer, answer_head, stream_answer

# Request bodies kept whole so that a retry can send them again.
REPLAY_LIMIT = 1024 * 1024
# A retryable answer (502, 503, 504) read whole to hold it while another instance is tried.
RETRY_ANSWER_LIMIT = 64 * 1024
_NO_BODY_STATUSES = frozenset({204, 304})


class RouteNotFound(NotFound):
    code = "route_not_found"


class ViewSource(Protocol):
    """What the outbound port needs of the catalog."""

    def view(self, service: str) -> ServiceView: ...

    def recheck(self, service: str) -> ServiceView:
        """The service's view read again now, if it was not read just before (the catalog
        bounds how often): the view a call was routed on knew nothing of what it asked for."""
        ...


class Proxy(Protocol):
    """What a call uses of the outbound port (``outbound.OutboundProxy``)."""

    views: ViewSource
    router: Router
    caller_address: str | None
    settings: OutboundSettings
    transport: Transport
    log: logging.Logger


@dataclass(frozen=True)
class _Answer:
    """An upstream answer held while another instance is tried."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


class OutboundCall:
    def __init__(self, app: Peer, proxy: Proxy, rid: str) -> None:
        self.app = app
        self.proxy = proxy
        self.rid = rid
        self.method = app.head.method
        # What the call's figures name (``metrics``): the service called, once the route is
        # read, and the status an instance answered with (None: none answered).
        self.service: str | None = None
        self.status: int | None = None

    def run(self) -> None:
        service, version, target = self._route()
        self.service = service
        body = self._body()
        headers = joined_fields(self.app.head.fields)
        call = Call(
            service,
            version,
            self.method,
            headers,
            self.proxy.caller_address,
            replayable=body.replayable,
        )
        plan = self._plan(call)
        if plan.panic:
            self.proxy.log.warning(
                "panic mode: routing over every live instance %s",
                fields(service=service, version=plan.version, live=len(plan.live)),
            )
        # As the gateway does with a client's: the app's X-Forwarded-For chain is kept and
        # this task's address appended, the one entry the outbound port vouches for. No edge
        # in front of the outbound port replaced the app's X-Forwarded-Proto and -Port.
        outgoing = upstream_headers(
            headers,
            client_ip=self.proxy.caller_address,
            proto="http",
            request_id=self.rid,
            trusted_edge=False,
        )
        if "expect" in self.app.head.index:
            # The app's Expect was answered here; the body is sent without waiting.
            outgoing = {k: v for k, v in outgoing.items() if k.lower() != "expect"}
        self._tries(plan, target, outgoing, body, f"/{service}/{version}")

    def _plan(self, call: Call) -> Plan:
        """The call's route. A view that knows no such service or version is read again at
        once (a version registered since the last refresh is routable without waiting for
        the next), and the call routed on what it says now."""
        views, router = self.proxy.views, self.proxy.router
        budget = self.proxy.settings.timeout_seconds
        try:
            return router.plan(call, views.view(call.service), budget)
        except (ServiceNotFound, VersionNotFound):
            fresh = views.recheck(call.service)
        return router.plan(call, fresh, budget)

    def _route(self) -> tuple[str, str, str]:
        path, sep, query = self.app.head.target.partition("?")
        parts = path.split("/", 3)
        if not path.startswith("/") or len(parts) < 3 or not parts[1] or not parts[2]:
            raise RouteNotFound("call /{service}/{version}/{path} on the outbound port")
        service, version = parts[1], parts[2]
        check_name("service", service)
        check_name("version", version)
        rest = parts[3] if len(parts) > 3 else ""
        # The request line was read as latin-1: each character is one byte sent.
        return service, version, quote_target(f"/{rest}{sep}{query}", "latin-1")

    def _body(self) -> Body:
        stream = self.app.body()
        if stream is None:
            self.app.body_read = True
            return Body(b"")
        head = bytearray()
        for part in stream:
            head += part
            if len(head) > REPLAY_LIMIT:
                return Body(bytes(head), self._rest(stream), self.app.head.announced_length())
        self.app.body_read = True
        return Body(bytes(head))

    def _rest(self, stream: Iterator[bytes]) -> Iterator[bytes]:
        yield from stream
        self.app.body_read = True

    def _tries(
        self, plan: Plan, target: str, headers: dict[str, str], body: Body, prefix: str
    ) -> None:
        held: _Answer | None = None
        error: LambdaMeshError = unreachable(plan.call)
        for instance in plan:
            plan.started(instance)
            try:
                outcome = self._try(plan, instance, target, headers, body, prefix)
            finally:
                plan.finished(instance)
            if outcome is None:
                return  # answered
            if isinstance(outcome, _Answer):
                held = outcome
            else:
                held, error = None, outcome
        if held is not None:
            self._send_held(held)
            return
        if plan.late and not plan.sent:
            error = late(plan.call)
        raise error

    def _try(
        self,
        plan: Plan,
        instance: Instance,
        target: str,
        headers: dict[str, str],
        body: Body,
        prefix: str,
    ) -> _Answer | LambdaMeshError | None:
        """None when the answer went to the app; an answer held for a retry; or the error."""
        transport = self.proxy.transport
        try:
            exchange = transport.send(plan, instance, self.method, target, headers, body)
        except TRY_FAILURES as exc:
            return self._failed(plan, instance, exc)
        except AppBodyFailed:
            plan.gave_up()
            raise
        except TimeoutError:
            return self._failed(plan, instance, UpstreamTimeout("no answer in time"))
        except (OSError, AnswerBroken) as exc:
            return self._broken(plan, instance, UpstreamUnreachable(reason(exc)))
        head = exchange.answer.head
        self._log_ejection(instance, plan.answered(instance, head.status))
        first = b""
        if plan.retryable:
            first, whole = read_upto(exchange, RETRY_ANSWER_LIMIT)
            if whole:
                transport.release(exchange)
                return _Answer(head.status, head.fields, first)
            plan.gave_up()
        self._stream(exchange, instance, plan, prefix, first)
        return None

    def _failed(self, plan: Plan, instance: Instance, exc: LambdaMeshError) -> LambdaMeshError:
        if isinstance(exc, HostNotAllowed):
            self._log_refusal(instance, exc.message)
        else:
            self._log_failure(instance, exc.code, exc.message)
        outcome = failed(plan, instance, exc, "the outbound port")
        self._log_ejection(instance, outcome.ejected_seconds)
        return outcome.error

    def _broken(self, plan: Plan, instance: Instance, exc: UpstreamUnreachable) -> LambdaMeshError:
        """The connection broke before an answer came: the instance's failure, unless the
        app's body was still streaming, since then the upstream may have given up waiting on
        an app slow to send it."""
        if self.app.body_read:
            return self._failed(plan, instance, exc)
        self._log_failure(instance, exc.code, exc.message)
        plan.gave_up()
        return unreachable(plan.call)

    def _send_held(self, held: _Answer) -> None:
        self.status = held.status
        headers = downstream_headers(held.headers, self.rid, head=self.method == "HEAD")
        if self.method == "HEAD":
            self.app.write(answer_head(self.app, held.status, headers, None))
            return
        self.app.write(answer_head(self.app, held.status, headers, len(held.body)) + held.body)

    def _stream(
        self, exchange: Exchange, instance: Instance, plan: Plan, prefix: str, first: bytes
    ) -> None:
        answer = exchange.answer
        self.status = answer.head.status
        headers = downstream_headers(answer.head.fields, self.rid, head=self.method == "HEAD")
        if plan.policy.rewrite_redirects and 300 <= answer.head.status < 400:
            rewrite_redirect(headers, prefix, instance.host, instance.port)
        timeout = self.proxy.settings.timeout_seconds
        cut = stream_answer(self.app, exchange, self.proxy.transport, headers, timeout, first)
        if cut is not None:
            self._log_failure(instance, "upstream_unreachable", cut)

    def _log_failure(self, instance: Instance, code: str, reason: str) -> None:
        self.proxy.log.warning(
            "upstream failed %s",
            fields(
                request_id=self.rid,
                service=instance.service,
                instance=instance.instance_id,
                error=code,
                reason=reason,
            ),
        )

    def _log_refusal(self, instance: Instance, reason: str) -> None:
        """Not an upstream failure: the reason names the setting that refused the address."""
        self.proxy.log.warning(
            "instance address refused by this sidecar's settings %s",
            fields(
                request_id=self.rid,
                service=instance.service,
                instance=instance.instance_id,
                error="upstream_not_allowed",
                reason=reason,
            ),
        )

    def _log_ejection(self, instance: Instance, seconds: float) -> None:
        if seconds:
            self.proxy.log.warning(
                "outlier ejected %s",
                fields(service=instance.service, instance=instance.instance_id, seconds=seconds),
            )
