"""The operator's tables: aligned columns, numbers to the right, every field an operator asks."""

from __future__ import annotations

from typing import Any

import pytest

from lambdamesh.listing import calls_cell, edge_cell, instances_table, services_table, table

NOW = 1_800_000_000.0


def test_columns_are_padded_to_their_widest_cell_and_numbers_right_aligned() -> None:
    text = table(("NAME", "COUNT"), [("a", 1), ("longer", 200)])

    assert text.splitlines() == ["NAME    COUNT", "a           1", "longer    200"]


def test_services_show_live_and_stored_counts_per_version() -> None:
    answer = {
        "services": [
            {
                "service": "orders",
                "live": 3,
                "total": 4,
                "versions": {"v1": {"live": 2, "total": 3}, "v2": {"live": 1, "total": 1}},
                "exposure": {"declared": True, "exposed": True, "versions": None, "auth": ["jwt"]},
            }
        ]
    }

    lines = services_table(answer).splitlines()

    assert lines[0].split() == ["SERVICE", "LIVE", "STORED", "VERSIONS", "(live/stored)", "EDGE"]
    assert lines[1].split() == ["orders", "3", "4", "v1:2/3", "v2:1/1", "jwt"]
    assert services_table({"services": []}) == "no services registered"


@pytest.mark.parametrize(
    ("summary", "cell"),
    [
        ({"declared": True, "exposed": False, "versions": None, "auth": []}, "internal"),
        ({"declared": False, "exposed": False, "versions": None, "auth": []}, "internal (default)"),
        (
            {"declared": False, "exposed": True, "versions": None, "auth": ["none"]},
            "public (default)",
        ),
        (
            {
                "declared": True,
                "exposed": True,
                "versions": ["v1", "live"],
                "auth": ["api_key", "jwt"],
            },
            "api_key|jwt [v1,live]",
        ),
        (None, "-"),
    ],
)
def test_the_edge_column_says_how_a_service_faces_the_internet(
    summary: dict[str, Any] | None, cell: str
) -> None:
    assert edge_cell(summary) == cell


def test_instances_show_address_status_weight_heartbeat_age_and_lease_left() -> None:
    instance = {
        "instance_id": "task-1",
        "version": "v1",
        "host": "10.0.1.5",
        "port": 8080,
        "zone": None,
        "status": "UP",
        "drained": True,
        "weight": 100,
        "updated_at": NOW - 2.5,
        "expires_in": 27.5,
    }

    lines = instances_table({"service": "orders", "instances": [instance]}, NOW).splitlines()

    assert lines[0].split() == [
        "INSTANCE",
        "VERSION",
        "HOST",
        "PORT",
        "ZONE",
        "STATUS",
        "WEIGHT",
        "BEAT",
        "LEASE",
        "IN",
        "OUT",
    ]
    assert lines[1].split() == [
        "task-1",
        "v1",
        "10.0.1.5",
        "8080",
        "-",
        "DRAINED",
        "100",
        "2.5s",
        "27.5s",
        "-",
        "-",
    ]
    assert (
        instances_table({"service": "orders", "instances": []}, NOW) == "no live instance of orders"
    )


FIGURES = {
    "seconds": 60.2,
    "in": {"requests": 120, "errors": 2, "p50_ms": 3.1, "p99_ms": 20.5},
    "out": {"requests": 0, "errors": 0, "p50_ms": None, "p99_ms": None},
    "reported_at": NOW - 30,
}
INSTANCE = {
    "instance_id": "task-1",
    "version": "v1",
    "host": "10.0.1.5",
    "port": 8080,
    "zone": None,
    "status": "UP",
    "weight": 100,
    "updated_at": NOW - 2.5,
    "expires_in": 27.5,
    "figures": FIGURES,
}


@pytest.mark.parametrize(
    ("figures", "port", "cell"),
    [
        (FIGURES, "in", "120/60s p99 20.5ms 2err"),
        (FIGURES, "out", "0/60s"),
        ({**FIGURES, "seconds": 2.04}, "out", "0/2.0s stale"),
        ({**FIGURES, "in": None}, "in", None),
        (None, "in", None),
    ],
)
def test_a_ports_calls_are_a_few_words_marked_stale_past_two_windows(
    figures: dict[str, Any] | None, port: str, cell: str | None
) -> None:
    assert calls_cell({**INSTANCE, "figures": figures}, port, NOW) == cell


def test_figures_of_the_last_heartbeat_are_not_stale_however_short_their_window() -> None:
    latest = {**FIGURES, "seconds": 0.5, "reported_at": NOW - 2.5}

    assert calls_cell({**INSTANCE, "figures": latest}, "out", NOW) == "0/0.5s"


def test_instances_show_the_calls_in_and_out_their_sidecar_last_reported() -> None:
    lines = instances_table({"service": "orders", "instances": [INSTANCE]}, NOW).splitlines()

    assert lines[1].endswith("2.5s  27.5s  120/60s p99 20.5ms 2err  0/60s")
