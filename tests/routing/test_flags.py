"""The on/off rule both the Lambda's and the sidecar's settings read their flags by."""

from __future__ import annotations

import pytest

from lambdamesh_routing.flags import FALSE_WORDS, TRUE_WORDS, InvalidFlag, parse_flag


@pytest.mark.parametrize("raw", [*TRUE_WORDS, "TRUE", " Yes ", "oN"])
def test_every_true_word_in_any_case_reads_as_on(raw: str) -> None:
    assert parse_flag(raw, default=False) is True


@pytest.mark.parametrize("raw", [*FALSE_WORDS, "FALSE", " No ", "Off"])
def test_every_false_word_in_any_case_reads_as_off(raw: str) -> None:
    assert parse_flag(raw, default=True) is False


@pytest.mark.parametrize("raw", [None, "", "   "])
@pytest.mark.parametrize("default", [True, False])
def test_an_unset_or_blank_flag_takes_the_default(raw: str | None, default: bool) -> None:
    assert parse_flag(raw, default) is default


@pytest.mark.parametrize("raw", ["maybe", "2", "-1", "y", "enabled", "t"])
def test_any_other_word_is_refused_quoting_it(raw: str) -> None:
    with pytest.raises(InvalidFlag) as caught:
        parse_flag(raw, default=False)

    assert str(caught.value).endswith(f"got {raw!r}")


def test_a_long_refused_value_is_quoted_only_in_part() -> None:
    with pytest.raises(InvalidFlag) as caught:
        parse_flag("x" * 500, default=False)

    assert len(str(caught.value)) < 160
