"""The sidecar's inbound port: the latency its mutual TLS hop adds, beside nginx terminating
mutual TLS for the same app, in one run.

Starts real processes on loopback: `lambdamesh dev` with a mesh CA this module makes and
``LAMBDAMESH_MTLS_DEFAULT=strict``; an "inventory" demo app; its sidecar serving the inbound
port, with intentions that let "orders" call (so every call is authorized as in production);
and nginx terminating TLS 1.3 in front of the same app, requiring and verifying the caller's
certificate against the same CA (skipped, saying so, where nginx is not installed). The client
holds a certificate for "orders" from the mesh CA, and times sequential calls

* direct to the app in plain HTTP (the baseline),
* through the inbound port (TLS 1.3, the caller's SPIFFE ID checked against the intentions,
  ``X-Forwarded-Client-Cert`` added), and
* through nginx (TLS 1.3, the caller's certificate verified, a header naming it added),

on one keep-alive connection each, so handshakes are amortized: a GET, a POST of 64 KiB to
the demo app's ``/echo`` (64 KiB back), and a POST of 1 MiB. A last case opens a new TLS
connection for every GET, to show what a handshake costs on each side (shown, not a goal:
callers keep connections alive, and the outbound port and the gateway pool theirs). The sides
alternate in rounds so that drift in the machine's load hits all alike.

Figures are p50 and p90 of the pooled rounds; the goal is that the inbound port adds at most
twice what nginx adds for the keep-alive GET, at p50 and at p90. Run with `make bench`.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import http.client
import json
import os
import ssl
import sys
from collections.abc import Callable

from chalicelib.mesh_ca import MeshCA, new_authority
from lambdamesh_routing.identity import Identity
from lambdamesh_routing.tls import mesh_contexts
from tests.bench import nginx_anchor
from tests.bench.bench_sidecar import (
    KIB,
    MIB,
    Case,
    _verdict,
    anchor_goals,
    free_port,
    latency_rows,
    machine,
    measure,
    sidecar,
    upstream,
)
from tests.e2e.conftest import Mesh
from tests.e2e.processes import Process, spawn, stop_all
from tests.helpers import SIGNING_KEY

STAGE = "bench"
DOMAIN = "lambdamesh"
# A request: method, path and body.
Request = tuple[str, str, bytes | None]
INTENTIONS = {
    "intentions": {
        "default": "deny",
        "rules": [{"from": "orders", "action": "allow"}, {"from": "_gateway", "action": "allow"}],
    }
}


def start_dev(ca_text: str) -> tuple[Process, str]:
    process = spawn(
        "dev-mtls",
        ["-m", "lambdamesh.cli", "dev", "--port", "0"],
        env={
            "LAMBDAMESH_SIGNING_KEY": SIGNING_KEY,
            "LAMBDAMESH_MESH_CA": ca_text,
            "LAMBDAMESH_STAGE": STAGE,
            "LAMBDAMESH_MTLS_DEFAULT": "strict",
            "AWS_ENDPOINT_URL_DYNAMODB": "",
            "LAMBDAMESH_EDGE_DEFAULT": "open",
        },
    )
    return process, process.wait_for_line(r"ready on (http://\S+)").group(1)


class Client:
    """One keep-alive connection (TLS with ``context``, else plain); ``caller`` makes a
    request and reads the whole answer. ``fresh`` opens a new connection for every call."""

    def __init__(self, port: int, context: ssl.SSLContext | None, fresh: bool = False) -> None:
        self.port, self.context, self.fresh = port, context, fresh
        self.conn = self._connect()
        self.ciphers: set[str] = set()

    def _connect(self) -> http.client.HTTPConnection:
        if self.context is None:
            return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=10, context=self.context)

    def caller(self, method: str, path: str, body: bytes | None = None) -> Callable[[], None]:
        headers = {"Content-Type": "application/octet-stream"} if body is not None else {}
        expected = len(body) if body is not None else None

        def call() -> None:
            if self.fresh:
                self.conn.close()
                self.conn = self._connect()
            self.conn.request(method, path, body, headers)
            response = self.conn.getresponse()
            data = response.read()
            assert response.status == 200, (response.status, data[:200])
            assert expected is None or len(data) == expected, len(data)
            sock = self.conn.sock
            if isinstance(sock, ssl.SSLSocket) and len(self.ciphers) < 2:
                self.ciphers.add(f"{sock.version()} {(sock.cipher() or ('?',))[0]}")

        return call

    def close(self) -> None:
        self.conn.close()


def refuse_anonymous(sides: dict[str, int]) -> None:
    """Both sides must do the same work: each refuses a caller without a certificate."""
    anonymous = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    anonymous.check_hostname = False
    anonymous.verify_mode = ssl.CERT_NONE
    for side, port in sides.items():
        client = Client(port, anonymous)
        try:
            client.conn.request("GET", "/items/1")
            status = client.conn.getresponse().status
        except (ssl.SSLError, ConnectionError):
            status = 0
        finally:
            client.close()
        assert status in (0, 400, 403), f"{side} served a caller without a certificate: {status}"


def report(cases: list[Case], ciphers: dict[str, set[str]]) -> dict[str, object]:
    """The figures, the TLS each side negotiated, and the goal's verdicts."""
    rows = latency_rows(cases)
    return {
        "machine": machine(),
        "nginx": nginx_anchor.version(),
        "openssl": ssl.OPENSSL_VERSION,
        "negotiated": {side: sorted(names) for side, names in ciphers.items()},
        "latency": rows,
        "goals": anchor_goals(rows[0]),
    }


def print_table(result: dict[str, object]) -> None:
    print(result["machine"], "|", "nginx", result["nginx"], "|", result["openssl"])
    print("negotiated:", json.dumps(result["negotiated"]))
    print(
        f"{'case':28} {'n':>5} {'direct p50':>10} {'p90':>7} {'inbound p50':>11} {'p90':>7} "
        f"{'nginx p50':>9} {'p90':>7} {'added: inbound':>14} {'nginx':>7} {'x nginx':>7}"
    )
    rows = result["latency"]
    assert isinstance(rows, list)
    for row in rows:
        measured = row.get("nginx_p50_ms") is not None
        anchor = (
            f"{row['nginx_p50_ms']:9.3f} {row['nginx_p90_ms']:7.3f}"
            if measured
            else f"{'-':>9} {'-':>7}"
        )
        added_nginx = (
            f"{row['nginx_added_p50_ms']:7.3f} {row['x_nginx_added_p50'] or '-':>7}"
            if measured
            else f"{'-':>7} {'-':>7}"
        )
        print(
            f"{row['case']:28} {row['requests']:5d} {row['direct_p50_ms']:10.3f} "
            f"{row['direct_p90_ms']:7.3f} {row['through_p50_ms']:11.3f} "
            f"{row['through_p90_ms']:7.3f} {anchor} {row['added_p50_ms']:14.3f} {added_nginx}"
        )
    print(
        "(ms; 'direct' is plain HTTP to the app, 'inbound' the sidecar's inbound port and "
        "'nginx' nginx, each terminating mutual TLS 1.3 for that app; 'added' is at p50)"
    )
    if rows and rows[0].get("nginx_p50_ms") is None:
        print("nginx not found: the anchor was skipped (apt-get install nginx-light)")
    goals = result["goals"]
    assert isinstance(goals, dict)
    get = rows[0]
    print()
    for which in ("p50", "p90"):
        goal = goals[f"get_added_{which}_x_nginx"]
        print(
            f"GET added {which}: inbound port {get[f'added_{which}_ms']:.3f} ms, nginx "
            f"{get.get(f'nginx_added_{which}_ms', '-')} ms, {goal['figure'] or '-'}x nginx's "
            f"(goal <= {goal['goal']:g}x): {_verdict(goal['met'])}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="keep-alive GETs each side")
    parser.add_argument("--rounds", type=int, default=4, help="alternations of the sides")
    parser.add_argument(
        "--handshakes", type=int, default=200, help="GETs on a new connection each, each side"
    )
    parser.add_argument("--json", action="store_true", help="print a JSON object, no table")
    args = parser.parse_args(argv)
    now = datetime.datetime.now(datetime.UTC)
    ca_text = new_authority(
        "bench mesh CA", now - datetime.timedelta(hours=1), datetime.timedelta(days=2)
    )
    ca = MeshCA.load(ca_text)
    orders = ca.issue(Identity(DOMAIN, STAGE, "orders"), now, datetime.timedelta(hours=4))
    _, client_context = mesh_contexts(orders.certificate, orders.private_key, orders.trust_bundle)
    # nginx presents what the inventory sidecar presents: a certificate for inventory.
    served = ca.issue(Identity(DOMAIN, STAGE, "inventory"), now, datetime.timedelta(hours=4))
    processes: list[Process] = []
    clients: list[Client] = []
    stack = contextlib.ExitStack()
    try:
        dev, url = start_dev(ca_text)
        processes.append(dev)
        mesh = Mesh(url, processes)
        assert mesh.put("/registry/services/inventory/policy", INTENTIONS).status == 201
        app = upstream("inventory", processes)
        inbound_port = free_port()
        inventory = sidecar(
            url,
            "inventory",
            app,
            "inventory-0",
            processes,
            LAMBDAMESH_INBOUND_PORT=str(inbound_port),
        )
        inventory.wait_for_line(r"inbound port listening")
        nginx_port = stack.enter_context(
            nginx_anchor.tls_terminator(
                [app], served.certificate, served.private_key, served.trust_bundle
            )
        )
        sides = {"inbound": inbound_port}
        if nginx_port is not None:
            sides["nginx"] = nginx_port
        refuse_anonymous(sides)
        direct = Client(app, None)
        kept = {side: Client(port, client_context) for side, port in sides.items()}
        fresh = {side: Client(port, client_context, fresh=True) for side, port in sides.items()}
        clients += [direct, *kept.values(), *fresh.values()]

        def on(side: dict[str, Client], name: str, call: Request) -> Callable[[], None] | None:
            client = side.get(name)
            return client.caller(*call) if client is not None else None

        small, large = os.urandom(64 * KIB), os.urandom(MIB)
        bulky = max(20, args.requests // 10)
        cases = []
        for name, count, call, clients_of in (
            ("GET /items/1", args.requests, ("GET", "/items/1", None), kept),
            ("POST 64 KiB to /echo", args.requests // 2, ("POST", "/echo", small), kept),
            ("POST 1 MiB to /echo", bulky, ("POST", "/echo", large), kept),
            ("GET, new TLS connection each", args.handshakes, ("GET", "/items/1", None), fresh),
        ):
            through = on(clients_of, "inbound", call)
            assert through is not None
            cases.append(
                measure(
                    name,
                    count,
                    args.rounds,
                    direct.caller(*call),
                    through,
                    on(clients_of, "nginx", call),
                )
            )
        ciphers = {side: client.ciphers for side, client in kept.items()}
    finally:
        for client in clients:
            client.close()
        stop_all(processes)
        stack.close()
    result = report(cases, ciphers)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
