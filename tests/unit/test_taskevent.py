"""`lambdamesh task-event`: the stop event it makes, the events it reads, and how it says
what went wrong; the Invoke API call itself is replaced here (tests/functional has it real)."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from chalicelib.task_events import TaskStop, is_task_event, read
from lambdamesh import cli, taskevent
from lambdamesh.apiclient import UsageError
from lambdamesh.taskevent import MAX_EVENT_BYTES, STOP_CODES, stopped_event
from tests.samples import FOLDER, STOPPED, load

TASK = "arn:aws:ecs:us-east-1:123456789012:task/prod/0123456789abcdef0123456789abcdef"
SHORT_TASK = "arn:aws:ecs:us-east-1:123456789012:task/b99d40b3-5176-4f71-9a52-9dbd6f1cebef"
NOW = datetime(2026, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC)


class TestTheStopEvent:
    def test_it_is_a_task_event_that_reads_as_the_tasks_stop(self) -> None:
        event = stopped_event(TASK, now=NOW)

        assert is_task_event(event)
        assert read(event) == TaskStop(
            task_arn=TASK,
            cluster_arn="arn:aws:ecs:us-east-1:123456789012:cluster/prod",
            desired_status="STOPPED",
            last_status="STOPPED",
            stop_code="EssentialContainerExited",
            stopped_reason="Essential container in task exited",
        )

    def test_it_has_the_fields_ecs_documents_with_their_timestamps(self) -> None:
        event = stopped_event(TASK, now=NOW)
        documented = load(STOPPED)

        assert set(event) == set(documented)
        assert (event["version"], event["account"], event["region"]) == (
            "0",
            "123456789012",
            "us-east-1",
        )
        assert event["resources"] == [TASK]
        assert event["time"] == "2026-01-02T03:04:05Z"
        detail = event["detail"]
        assert set(detail) <= set(documented["detail"])
        assert detail["stoppedAt"] == detail["stoppingAt"] == "2026-01-02T03:04:05.678Z"
        assert isinstance(detail["version"], int)

    def test_the_old_short_arn_form_names_the_default_cluster(self) -> None:
        event = stopped_event(SHORT_TASK, now=NOW)

        assert event["detail"]["clusterArn"] == "arn:aws:ecs:us-east-1:123456789012:cluster/default"
        assert isinstance(read(event), TaskStop)

    @pytest.mark.parametrize("stop_code", STOP_CODES)
    def test_every_stop_code_it_offers_makes_a_stop(self, stop_code: str) -> None:
        stop = read(stopped_event(TASK, stop_code, now=NOW))

        assert isinstance(stop, TaskStop)
        assert stop.stop_code == stop_code
        assert stop.stopped_reason

    def test_a_stopping_task_has_no_stopped_time_yet(self) -> None:
        event = stopped_event(TASK, last_status="STOPPING", now=NOW)

        assert "stoppedAt" not in event["detail"]
        assert isinstance(read(event), TaskStop)

    @pytest.mark.parametrize(
        "arn",
        [
            "not-an-arn",
            "",
            "arn:aws:ecs:us-east-1:123456789012:service/prod/orders",
            "arn:aws:lambda:us-east-1:123456789012:task/prod/abc",
            "arn:aws:ecs:us-east-1:123456789012:task/",
            "arn:aws:ecs:us-east-1:1234:task/prod/abc",
            "arn:aws:ecs:us-east-1:123456789012:task/prod/abc/extra",
            TASK + "\n",
        ],
    )
    def test_an_arn_the_registry_would_never_hold_is_a_usage_error(self, arn: str) -> None:
        with pytest.raises(UsageError) as refused:
            stopped_event(arn)

        assert "ECS task ARN" in refused.value.message


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """Every (url, event) the command hands on; the function answers that it removed one."""
    calls: list[tuple[str, Any]] = []

    def invoke(url: str, event: Any) -> Any:
        calls.append((url, event))
        return {"outcome": "removed", "removed": [{"service": "orders", "instance_id": "a"}]}

    monkeypatch.setattr(taskevent, "invoke", invoke)
    return calls


def run(*args: str) -> int:
    return cli.main(["task-event", *args])


class TestTheCommand:
    def test_it_hands_on_the_event_in_a_file_and_prints_the_answer(
        self, sent: list[tuple[str, Any]], capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert run(str(FOLDER / STOPPED), "--url", "http://127.0.0.1:9000") == 0

        assert sent == [("http://127.0.0.1:9000", load(STOPPED))]
        assert json.loads(capsys.readouterr().out)["outcome"] == "removed"

    def test_it_reads_the_event_from_stdin_given_a_dash(
        self,
        sent: list[tuple[str, Any]],
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(load(STOPPED))))

        assert run("-") == 0

        assert sent == [("http://127.0.0.1:8000", load(STOPPED))]

    def test_it_makes_the_stop_event_of_a_task(self, sent: list[tuple[str, Any]]) -> None:
        assert run("--stopped", TASK, "--stop-code", "UserInitiated") == 0

        [(_, event)] = sent
        stop = read(event)
        assert isinstance(stop, TaskStop)
        assert (stop.task_arn, stop.stop_code, stop.last_status) == (
            TASK,
            "UserInitiated",
            "STOPPED",
        )

    def test_a_termination_notice_is_made_as_ecs_sends_it_while_the_task_runs(
        self, sent: list[tuple[str, Any]]
    ) -> None:
        assert run("--stopped", TASK, "--stop-code", "TerminationNotice") == 0

        [(_, event)] = sent
        detail = event["detail"]
        assert (detail["desiredStatus"], detail["lastStatus"]) == ("STOPPED", "RUNNING")
        assert "stoppedAt" not in detail and "stoppingAt" not in detail
        assert isinstance(read(event), TaskStop)

    def test_a_stop_code_without_stopped_is_refused(
        self, sent: list[tuple[str, Any]], capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert run(str(FOLDER / STOPPED), "--stop-code", "UserInitiated") == 2

        assert "--stop-code" in capsys.readouterr().err
        assert sent == []

    @pytest.mark.parametrize(
        ("content", "says"),
        [
            (b"{not json", "not JSON"),
            (b"", "not JSON"),
            (b"\xff\xfe{}", "not UTF-8"),
            (b"{" + b" " * MAX_EVENT_BYTES + b"}", "larger than EventBridge's 256 KB"),
        ],
        ids=["invalid", "empty", "binary", "too-large"],
    )
    def test_a_file_that_holds_no_event_is_a_usage_error_naming_it(
        self,
        sent: list[tuple[str, Any]],
        capsys: pytest.CaptureFixture[str],
        tmp_path: Path,
        content: bytes,
        says: str,
    ) -> None:
        path = tmp_path / "event.json"
        path.write_bytes(content)

        assert run(str(path)) == 2

        [line] = capsys.readouterr().err.splitlines()
        assert line.startswith(f"lambdamesh: {path}: ")
        assert says in line
        assert sent == []

    def test_an_event_of_exactly_the_largest_size_is_read(
        self, sent: list[tuple[str, Any]], tmp_path: Path
    ) -> None:
        path = tmp_path / "event.json"
        event = load(STOPPED)
        text = json.dumps(event)
        path.write_text(text + " " * (MAX_EVENT_BYTES - len(text)), encoding="utf-8")

        assert run(str(path)) == 0
        assert sent[0][1] == event

    def test_a_multibyte_event_is_measured_in_bytes(
        self, sent: list[tuple[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = tmp_path / "event.json"
        path.write_text(json.dumps({"pad": "é" * (MAX_EVENT_BYTES // 2)}), encoding="utf-8")

        assert run(str(path)) == 2
        assert "larger than" in capsys.readouterr().err

    def test_stdin_that_is_not_json_is_a_usage_error(
        self,
        sent: list[tuple[str, Any]],
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        monkeypatch.setattr("sys.stdin", io.StringIO("STOPPED"))

        assert run("-") == 2
        assert capsys.readouterr().err.startswith("lambdamesh: -: not JSON")

    def test_a_missing_file_is_a_usage_error(
        self, sent: list[tuple[str, Any]], capsys: pytest.CaptureFixture[str], tmp_path: Path
    ) -> None:
        missing = tmp_path / "nowhere.json"

        assert run(str(missing)) == 2
        assert capsys.readouterr().err.strip() == (
            f"lambdamesh: {missing}: No such file or directory"
        )

    def test_a_directory_is_a_usage_error(
        self, sent: list[tuple[str, Any]], capsys: pytest.CaptureFixture[str], tmp_path: Path
    ) -> None:
        assert run(str(tmp_path)) == 2
        assert capsys.readouterr().err.startswith(f"lambdamesh: {tmp_path}: ")

    def test_a_bad_arn_is_a_usage_error_before_anything_is_sent(
        self, sent: list[tuple[str, Any]], capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert run("--stopped", "my-task") == 2

        assert "not an ECS task ARN" in capsys.readouterr().err
        assert sent == []

    @pytest.mark.parametrize("url", ["127.0.0.1:8000", "ftp://127.0.0.1", "http://", "file:///x"])
    def test_a_url_that_is_not_http_is_a_usage_error(
        self, capsys: pytest.CaptureFixture[str], url: str
    ) -> None:
        assert run("--stopped", TASK, "--url", url) == 2
        assert "--url must be an http(s) URL" in capsys.readouterr().err

    @pytest.mark.parametrize(
        "args", [[], [str(FOLDER / STOPPED), "--stopped", TASK]], ids=["neither", "both"]
    )
    def test_it_takes_a_file_or_stopped_but_not_both(
        self, capsys: pytest.CaptureFixture[str], args: list[str]
    ) -> None:
        with pytest.raises(SystemExit) as exited:
            run(*args)

        assert exited.value.code == 2
        assert "FILE" in capsys.readouterr().err


def test_the_help_says_what_it_does_where_it_sends_and_how(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        run("--help")

    text = capsys.readouterr().out
    assert "lambdamesh dev" in text
    assert "arn:aws:ecs:" in text  # what a task ARN looks like
    for code in STOP_CODES:
        assert code in text
    assert "EventBridge" in text
    assert "exit status" in text
    # The usage line names the stop code, not every choice of it.
    usage = text.split("\n\n", 1)[0]
    assert "TerminationNotice" not in usage


def test_the_helps_example_arn_is_one_the_registry_takes() -> None:
    assert isinstance(read(stopped_event(taskevent.EXAMPLE_ARN)), TaskStop)
