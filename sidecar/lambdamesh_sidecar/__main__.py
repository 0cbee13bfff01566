"""Entry point: ``lambdamesh-sidecar`` or ``python -m lambdamesh_sidecar``.

The composition root: the only place that reads the process environment, installs signal
handlers and picks the real clock, network and randomness for the runner.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from collections.abc import Callable, Mapping, Sequence

from lambdamesh_sidecar import __version__
from lambdamesh_sidecar.client import Registration, RegistryClient
from lambdamesh_sidecar.config import Settings, load
from lambdamesh_sidecar.environment import ConfigError
from lambdamesh_sidecar.logs import LOGGER_NAME, PREFIX, configure, fields
from lambdamesh_sidecar.readiness import readiness_check
from lambdamesh_sidecar.runner import Runner, Timing
from lambdamesh_sidecar.signals import StopOnSignal, run_off_main_thread
from lambdamesh_sidecar.variables import VARIABLES

EXIT_CONFIG = 2
EXIT_INTERRUPTED = 130

DESCRIPTION = """\
Keeps this ECS task registered in the lambdamesh registry: waits until the app is ready,
registers it, heartbeats, registers again if the registry forgets it, and deregisters on
SIGTERM or SIGINT. All settings come from the environment; an invalid one exits with status 2.
"""


def _parser() -> argparse.ArgumentParser:
    width = max(len(name) for name, _ in VARIABLES)
    epilog = "environment:\n" + "\n".join(
        f"  {name.ljust(width)}  {meaning}" for name, meaning in VARIABLES
    )
    parser = argparse.ArgumentParser(
        prog="lambdamesh-sidecar",
        description=DESCRIPTION,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def build(settings: Settings, stop: threading.Event) -> Runner:
    registry = _registry(settings)
    registration = Registration(
        version=settings.version,
        host=settings.host,
        port=settings.port,
        lease_seconds=settings.lease_seconds,
        weight=settings.weight,
        zone=settings.zone,
        metadata=settings.metadata,
        task_arn=settings.task_arn,
    )
    timing = Timing(
        heartbeat_seconds=settings.heartbeat_seconds,
        lease_seconds=settings.lease_seconds,
        status_check_seconds=settings.readiness_seconds,
        request_timeout=settings.request_timeout_seconds,
        drain_seconds=settings.drain_seconds,
    )
    ready = readiness_check(settings.host, settings.port, settings.health_path)
    return Runner(registry, registration, ready, stop, timing=timing)


def _registry(settings: Settings) -> RegistryClient:
    return RegistryClient(
        settings.registry_url,
        settings.token,
        settings.service,
        settings.instance_id,
        timeout=settings.request_timeout_seconds,
    )


def serve_outbound(settings: Settings) -> Callable[[], None]:
    """Start the outbound port and its refresher; returns what closes them. Raises
    ``OSError`` when the port cannot be bound."""
    # Imported here: a sidecar without the outbound port never loads the routing modules
    # (about 2 MiB of resident memory).
    from lambdamesh_routing.router import Router
    from lambdamesh_sidecar.catalog import Catalog
    from lambdamesh_sidecar.outbound import OutboundProxy

    assert settings.outbound is not None
    config = settings.outbound
    catalog = Catalog(
        _registry(settings).routing_view,
        refresh_seconds=config.refresh_seconds,
        stale_seconds=config.stale_seconds,
    )
    outbound = OutboundProxy(
        catalog, Router(), config.address_policy(), caller_address=settings.host, settings=config
    )
    server = outbound.serve(config.port)
    refresher_stop = threading.Event()
    threads = [
        threading.Thread(target=server.serve_forever, name="lambdamesh-outbound", daemon=True),
        threading.Thread(
            target=catalog.run, args=(refresher_stop,), name="lambdamesh-refresh", daemon=True
        ),
    ]
    for thread in threads:
        thread.start()

    def close() -> None:
        refresher_stop.set()
        server.shutdown()
        server.server_close()

    return close


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Returns the exit status; ``--help`` and ``--version`` exit from inside argparse."""
    _parser().parse_args(argv)
    # Before load(), which may wait seconds on ECS's metadata endpoint: as a container's PID 1
    # the sidecar would otherwise drop a SIGTERM sent then, and register a stopping task.
    stop = threading.Event()
    signals = StopOnSignal(stop)
    signals.install()
    try:
        settings = load(os.environ if environ is None else environ)
    except ConfigError as exc:
        print(f"{PREFIX} {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    log = configure(settings.log_level)
    log.info(
        "starting %s",
        fields(
            service=settings.service,
            version=settings.version,
            instance=settings.instance_id,
            address=f"{settings.host}:{settings.port}",
            zone=settings.zone,
            registry=settings.registry_url,
            heartbeat=f"{settings.heartbeat_seconds:g}s",
            lease=f"{settings.lease_seconds}s",
            drain=f"{settings.drain_seconds:g}s",
            readiness=settings.health_path or "tcp",
            sidecar=__version__,
        ),
    )
    close_outbound = _start_outbound(settings)
    if close_outbound is None:
        return EXIT_CONFIG
    runner = build(settings, stop)

    def run() -> int:
        try:
            return runner.run()
        finally:
            close_outbound()  # after deregistering: the app may call out while it drains

    return run_off_main_thread(run, signals)


def _start_outbound(settings: Settings) -> Callable[[], None] | None:
    """The outbound port's closer (a no-op when it is off); None when it cannot listen."""
    if settings.outbound is None:
        return lambda: None
    try:
        close = serve_outbound(settings)
    except OSError as exc:
        print(
            f"{PREFIX} LAMBDAMESH_OUTBOUND_PORT {settings.outbound.port} cannot be served on "
            f"127.0.0.1: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return None
    logging.getLogger(LOGGER_NAME).info(
        "outbound port listening %s",
        fields(
            address=f"127.0.0.1:{settings.outbound.port}",
            refresh=f"{settings.outbound.refresh_seconds:g}s",
        ),
    )
    return close


if __name__ == "__main__":
    sys.exit(main())
