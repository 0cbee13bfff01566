"""Entry point: ``lambdamesh-sidecar`` or ``python -m lambdamesh_sidecar``.

The composition root: the only place that reads the process environment, installs signal
handlers and picks the real clock, network and randomness for the runner.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from lambdamesh_sidecar import __version__
from lambdamesh_sidecar.backoff import Backoff
from lambdamesh_sidecar.client import Registration, RegistryClient, RegistryError
from lambdamesh_sidecar.config import Settings, load
from lambdamesh_sidecar.environment import ConfigError
from lambdamesh_sidecar.logs import LOGGER_NAME, PREFIX, configure, fields
from lambdamesh_sidecar.readiness import readiness_check
from lambdamesh_sidecar.runner import Runner, Timing
from lambdamesh_sidecar.signals import StopOnSignal, run_off_main_thread
from lambdamesh_sidecar.variables import VARIABLES

if TYPE_CHECKING:
    from lambdamesh_sidecar.identity import IdentityKeeper
    from lambdamesh_sidecar.metrics import CallMetrics

EXIT_CONFIG = 2
EXIT_INTERRUPTED = 130
LOOPBACK = "127.0.0.1"
# Before the inbound port serves: its certificate and its own policy, retried at this pace.
STARTUP_RETRY = Backoff(base=1.0, cap=30.0)

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


def build(settings: Settings, stop: threading.Event, metrics: CallMetrics | None = None) -> Runner:
    """``metrics``: the ports' figures, which each heartbeat reports too."""
    registry = _registry(settings, None if metrics is None else metrics.window)
    registration = Registration(
        version=settings.version,
        host=settings.host,
        port=settings.registered_port,
        lease_seconds=settings.lease_seconds,
        weight=settings.weight,
        zone=settings.zone,
        metadata=settings.metadata,
        task_arn=settings.task_arn,
        tls=settings.inbound is not None,
    )
    timing = Timing(
        heartbeat_seconds=settings.heartbeat_seconds,
        lease_seconds=settings.lease_seconds,
        status_check_seconds=settings.readiness_seconds,
        request_timeout=settings.request_timeout_seconds,
        drain_seconds=settings.drain_seconds,
    )
    # Behind the inbound port the app listens on loopback, where only the sidecar reaches it.
    app_host = LOOPBACK if settings.inbound is not None else settings.host
    ready = readiness_check(app_host, settings.port, settings.health_path)
    return Runner(registry, registration, ready, stop, timing=timing)


def _registry(
    settings: Settings, figures: Callable[[], dict[str, Any]] | None = None
) -> RegistryClient:
    return RegistryClient(
        settings.registry_url,
        settings.token,
        settings.service,
        settings.instance_id,
        timeout=settings.request_timeout_seconds,
        figures=figures,
    )


def serve_outbound(
    settings: Settings, keeper: IdentityKeeper | None = None, metrics: CallMetrics | None = None
) -> Callable[[], None]:
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
        catalog,
        Router(),
        config.address_policy(),
        caller_address=settings.host,
        settings=config,
        credentials=(lambda: None) if keeper is None else (lambda: keeper.current),
        metrics=metrics,
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


def serve_inbound(
    settings: Settings,
    stop: threading.Event,
    keeper: IdentityKeeper,
    metrics: CallMetrics | None = None,
) -> Callable[[], None] | None:
    """Obtain the service's certificate and read its own policy (each retried until it
    succeeds or the sidecar is stopped: None then), then start the inbound port and what keeps
    the policy fresh; returns what closes them. Raises ``OSError`` when the port cannot be
    bound."""
    from lambdamesh_sidecar.identity import InvalidCertificate
    from lambdamesh_sidecar.inbound import InboundPort
    from lambdamesh_sidecar.mesh_policy import OwnPolicy

    assert settings.inbound is not None
    config = settings.inbound
    policy = OwnPolicy(_registry(settings).routing_view, settings.service, config.refresh_seconds)
    failures = (RegistryError, InvalidCertificate, ValueError)
    for step, attempt in (("certificate", keeper.obtain), ("own policy", policy.read)):
        if not _until_done(step, attempt, failures, stop):
            return None
    server = InboundPort(config, settings.port, keeper, policy, metrics=metrics).serve()
    policy_stop = threading.Event()
    threads = [
        threading.Thread(target=server.serve_forever, name="lambdamesh-inbound", daemon=True),
        threading.Thread(
            target=policy.run, args=(policy_stop,), name="lambdamesh-own-policy", daemon=True
        ),
    ]
    for thread in threads:
        thread.start()

    def close() -> None:
        policy_stop.set()
        server.shutdown()
        server.server_close()

    return close


def _keeper(settings: Settings) -> IdentityKeeper | None:
    """The service's certificate, for either port; None when neither is served. Imported
    here: a sidecar without them never loads ssl."""
    if settings.inbound is None and settings.outbound is None:
        return None
    from lambdamesh_sidecar.identity import IdentityKeeper

    return IdentityKeeper(_registry(settings).certificate, settings.service)


def _metrics(settings: Settings) -> CallMetrics | None:
    """The ports' figures, when either port is served and the period is not 0."""
    if settings.metrics_seconds == 0 or (settings.inbound is None and settings.outbound is None):
        return None
    from lambdamesh_sidecar.metrics import CallMetrics

    served = tuple(
        direction
        for direction, port in (("in", settings.inbound), ("out", settings.outbound))
        if port is not None
    )
    return CallMetrics(settings.service, settings.instance_id, settings.task_arn, directions=served)


def _flushing(metrics: CallMetrics | None, period: float) -> Callable[[], None]:
    """Write the figures every ``period`` in the background; returns what stops it (after a
    last flush)."""
    if metrics is None:
        return lambda: None
    stop = threading.Event()
    thread = threading.Thread(
        target=metrics.run, args=(stop, period), name="lambdamesh-metrics", daemon=True
    )
    thread.start()

    def end() -> None:
        stop.set()
        thread.join(5)

    return end


def _renewing(keeper: IdentityKeeper | None) -> Callable[[], None]:
    """Keep the certificate renewed (or, for an outbound port alone, obtain it) in the
    background; returns what stops it."""
    if keeper is None:
        return lambda: None
    stop = threading.Event()
    threading.Thread(
        target=keeper.run, args=(stop,), name="lambdamesh-identity", daemon=True
    ).start()
    return stop.set


def _until_done(
    step: str,
    attempt: Callable[[], object],
    failures: tuple[type[Exception], ...],
    stop: threading.Event,
) -> bool:
    """``attempt`` retried with backoff until it succeeds (True) or the sidecar is stopped."""
    log = logging.getLogger(LOGGER_NAME)
    failed = 0
    rng = random.Random()
    while not stop.is_set():
        try:
            attempt()
            return True
        except failures as exc:
            delay = STARTUP_RETRY.delay(failed, rng)
            failed += 1
            log.warning(
                "inbound port waiting for its %s %s",
                fields(error=getattr(exc, "message", None) or str(exc), retry_in=f"{delay:.1f}s"),
            )
            stop.wait(delay)
    return False


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
    keeper = _keeper(settings)
    metrics = _metrics(settings)
    close_outbound = _start_outbound(settings, keeper, metrics)
    if close_outbound is None:
        return EXIT_CONFIG
    runner = build(settings, stop, metrics)

    def run() -> int:
        close_inbound = _start_inbound(settings, stop, keeper, metrics)
        if close_inbound is None:
            close_outbound()
            return 0 if stop.is_set() else EXIT_CONFIG
        stop_renewing = _renewing(keeper)
        stop_flushing = _flushing(metrics, settings.metrics_seconds)
        try:
            return runner.run()
        finally:
            close_inbound()  # after deregistering: callers routed on old views still come
            close_outbound()  # after deregistering: the app may call out while it drains
            stop_renewing()
            stop_flushing()

    return run_off_main_thread(run, signals)


def _start_inbound(
    settings: Settings,
    stop: threading.Event,
    keeper: IdentityKeeper | None,
    metrics: CallMetrics | None = None,
) -> Callable[[], None] | None:
    """The inbound port's closer (a no-op when it is off); None when it cannot listen, or the
    sidecar was stopped before it could."""
    if settings.inbound is None:
        return lambda: None
    assert keeper is not None
    try:
        close = serve_inbound(settings, stop, keeper, metrics)
    except OSError as exc:
        print(
            f"{PREFIX} LAMBDAMESH_INBOUND_PORT {settings.inbound.port} cannot be served: "
            f"{exc.strerror or exc}",
            file=sys.stderr,
        )
        return None
    if close is not None:
        logging.getLogger(LOGGER_NAME).info(
            "inbound port listening %s",
            fields(port=settings.inbound.port, app=f"{LOOPBACK}:{settings.port}"),
        )
    return close


def _start_outbound(
    settings: Settings, keeper: IdentityKeeper | None, metrics: CallMetrics | None = None
) -> Callable[[], None] | None:
    """The outbound port's closer (a no-op when it is off); None when it cannot listen."""
    if settings.outbound is None:
        return lambda: None
    try:
        close = serve_outbound(settings, keeper, metrics)
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
