"""The functional tier's one table per session: each test that asks for ``store`` finds it empty."""

from __future__ import annotations

from typing import Any

from tests.functional.conftest import empty


def test_emptying_the_shared_table_deletes_items_beyond_the_first_scan_page(
    shared_table: Any,
) -> None:
    # Given more than the 1 MB one scan page returns
    with shared_table.batch_writer() as batch:
        for n in range(80):
            batch.put_item(Item={"pk": "filler", "sk": f"i-{n:02}", "pad": "x" * 15_000})
    assert "LastEvaluatedKey" in shared_table.scan()
    # When the table is emptied
    empty(shared_table)
    # Then nothing is left
    assert shared_table.scan()["Items"] == []
