"""nginx as a reverse proxy in front of the same upstreams: the anchor the outbound port's
added latency is compared with, since nginx (or Envoy) beside the app is what a team would
otherwise run for service-to-service calls.

Debian's ``nginx`` package (``apt-get install nginx-light`` is enough). Where there is none,
``reverse_proxy`` yields None and the benchmark says it skipped the anchor.

The configuration is the one a team would write for this job: one worker (the sidecar serves
from one process too), upstream connections kept alive, HTTP/1.1 to the upstream, request and
answer bodies of up to 2 MiB held in memory, no access log; and the headers the sidecar's
ports add, so that the app reads, and echoes, the same request through either:
``X-Forwarded-For``, ``X-Forwarded-Proto`` and ``X-Forwarded-Host`` to the app, and a request
id (16 random bytes in hex, as the sidecar makes one) both ways.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CANDIDATES = ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")

CONFIG = """\
worker_processes 1;
daemon off;
master_process on;
pid {prefix}/nginx.pid;
error_log stderr warn;
{user}
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    client_max_body_size 2m;
    client_body_buffer_size 2m;
    proxy_buffer_size 16k;
    proxy_buffers 128 16k;
    proxy_busy_buffers_size 64k;
    keepalive_requests 100000;
    upstream inventory {{
{servers}
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{port}{listen};
{tls}
        location / {{
            proxy_pass http://inventory;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $http_host;
            proxy_set_header X-Request-Id $request_id;
            add_header X-Request-Id $request_id always;
{headers}
        }}
    }}
}}
"""

# TLS as the inbound port terminates it: TLS 1.3 only, the caller's certificate required and
# verified against the mesh's CA, no session tickets; the caller's certificate named to the
# app in a header, as the inbound port names it in X-Forwarded-Client-Cert.
TLS = """\
        ssl_certificate {certificate};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.3;
        ssl_client_certificate {bundle};
        ssl_verify_client on;
        ssl_session_tickets off;"""
TLS_HEADERS = """\
            proxy_set_header X-Forwarded-Client-Cert "Hash=$ssl_client_fingerprint";"""


def binary() -> str | None:
    found = shutil.which("nginx")
    if found:
        return found
    return next((path for path in CANDIDATES if Path(path).is_file()), None)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_listening(port: int, process: subprocess.Popen[bytes], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nginx did not start listening")


@contextmanager
def reverse_proxy(upstream_ports: list[int]) -> Iterator[int | None]:
    """nginx on a free loopback port, round-robin over ``upstream_ports``; None without nginx."""
    with _nginx(upstream_ports, None) as port:
        yield port


@contextmanager
def tls_terminator(
    upstream_ports: list[int], certificate: str, key: str, bundle: str
) -> Iterator[int | None]:
    """nginx terminating mutual TLS on a free loopback port (``certificate`` and ``key`` its
    own, PEM; callers' certificates verified against ``bundle``), round-robin over
    ``upstream_ports`` in plain HTTP; None without nginx."""
    with _nginx(upstream_ports, (certificate, key, bundle)) as port:
        yield port


@contextmanager
def _nginx(upstream_ports: list[int], tls: tuple[str, str, str] | None) -> Iterator[int | None]:
    nginx = binary()
    if nginx is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="lambdamesh-nginx-") as prefix:
        port = _free_port()
        servers = "\n".join(f"        server 127.0.0.1:{p};" for p in upstream_ports)
        # As root, nginx's worker would switch to "nobody", who cannot use the temp folders.
        user = "user root;" if _is_root() else ""
        terminating = {"listen": "", "tls": "", "headers": ""}
        if tls is not None:
            files = {}
            for name, text in zip(("certificate", "key", "bundle"), tls, strict=True):
                files[name] = Path(prefix) / f"{name}.pem"
                files[name].write_text(text)
                files[name].chmod(0o600)
            terminating = {"listen": " ssl", "tls": TLS.format(**files), "headers": TLS_HEADERS}
        config = Path(prefix) / "nginx.conf"
        config.write_text(
            CONFIG.format(prefix=prefix, port=port, servers=servers, user=user, **terminating)
        )
        process = subprocess.Popen(
            [nginx, "-p", prefix, "-c", str(config), "-e", "stderr"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            _wait_listening(port, process)
            yield port
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def version() -> str:
    nginx = binary()
    if nginx is None:
        return "no nginx"
    done = subprocess.run([nginx, "-v"], capture_output=True, text=True, check=False)
    return (done.stderr or done.stdout).strip().removeprefix("nginx version: ")


def _is_root() -> bool:
    import os

    return os.geteuid() == 0
