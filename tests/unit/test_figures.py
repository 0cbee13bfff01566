"""An instance's figures of calls in and out: as a heartbeat carries them, as its item keeps
them (compact), and as the registry answers with them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib.figures import CallFigures, Figures, Reported, from_stored, from_wire, stored
from tests.unit.conftest import NOW, MakeInstance

WIRE: dict[str, Any] = {
    "seconds": 60.2,
    "in": {"requests": 120, "errors": 2, "p50_ms": 3.1, "p99_ms": 20.5},
    "out": {"requests": 40, "errors": 0, "p50_ms": 1.2, "p99_ms": 2.0},
}
FIGURES = Figures(
    seconds=60.2,
    inbound=CallFigures(120, 2, 3.1, 20.5),
    outbound=CallFigures(40, 0, 1.2, 2.0),
    reported_at=NOW,
)


def test_a_heartbeats_figures_are_stamped_and_kept_to_the_microsecond() -> None:
    precise = {"seconds": 60.20049, "in": {**WIRE["in"], "p99_ms": 20.50049}}

    figures = from_wire(precise, NOW + 0.0004)

    assert figures == FIGURES._replace(outbound=None)
    assert figures.to_json() == {**WIRE, "out": None, "reported_at": NOW}


def test_the_stored_text_is_compact_and_reads_back_the_same() -> None:
    text = stored(FIGURES)

    assert text == (
        '{"seconds":60.2,"in":[120,2,3.1,20.5],"out":[40,0,1.2,2.0],'
        f'"reported_at":{json.dumps(NOW)}}}'
    )
    assert from_stored(text) == FIGURES


def test_a_port_not_reported_is_left_out_of_the_stored_text() -> None:
    quiet = Figures(5.0, CallFigures(0, 0, None, None), None, NOW)

    text = stored(quiet)

    assert '"out"' not in text
    assert from_stored(text) == quiet


@pytest.mark.parametrize(
    "text",
    [None, "", "not json", "[]", '{"seconds":1}', '{"seconds":1,"in":[1],"reported_at":1}'],
)
def test_text_this_module_did_not_write_reads_as_no_figures(text: str | None) -> None:
    assert from_stored(text) is None


def test_an_instance_answers_with_its_figures_or_null(make_instance: MakeInstance) -> None:
    instance = make_instance("i-1")

    with_figures = Reported(instance, FIGURES).to_json(NOW)
    without = Reported(instance).to_json(NOW)

    assert with_figures == {**instance.to_json(NOW), "figures": {**WIRE, "reported_at": NOW}}
    assert without == {**instance.to_json(NOW), "figures": None}
