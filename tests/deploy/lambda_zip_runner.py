"""Runs the unpacked deployment.zip as Lambda would: its own directory and the standard library.

Started as ``python -I -S lambda_zip_runner.py ZIP_DIR EVENTS_JSON RESULTS_JSON``: ``-I -S``
keeps site-packages and PYTHON* variables out, so anything the zip forgot to bundle fails to
import here as it would on Lambda. Each event is handed to ``app.app(event, context)`` in order,
in one process (one cold start, then warm invocations); the answers and where every imported
module came from are written to RESULTS_JSON. Only the standard library is used before the
zip's directory is on the path.
"""

import json
import sys
import time
import uuid

LAMBDA_TIMEOUT_MS = 29_000


class Context:
    """The attributes of the Lambda context object the app and Powertools read."""

    function_name = "lambdamesh-prod"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    log_group_name = "/aws/lambda/lambdamesh-prod"
    log_stream_name = "2024/01/01/[$LATEST]0123456789abcdef"

    def __init__(self) -> None:
        self.aws_request_id = str(uuid.uuid4())
        self.invoked_function_arn = (
            "arn:aws:lambda:eu-west-1:111122223333:function:" + self.function_name
        )
        self._deadline = time.monotonic() + LAMBDA_TIMEOUT_MS / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def isolation(zip_dir: str) -> dict[str, object]:
    """Facts about this interpreter's import path, for the test to assert on."""
    facts: dict[str, object] = {
        "site_imported": "site" in sys.modules,
        "path": list(sys.path),
    }
    for name in ("chalice", "moto", "pytest", "lambdamesh"):
        try:
            module = __import__(name)
        except ImportError as exc:
            facts[name] = {"error": type(exc).__name__}
        else:
            facts[name] = {"file": getattr(module, "__file__", None)}
    facts["zip_dir"] = zip_dir
    return facts


def main() -> None:
    zip_dir, events_file, results_file = sys.argv[1:4]
    sys.path.insert(0, zip_dir)
    facts = isolation(zip_dir)
    with open(events_file) as handle:
        events = json.load(handle)

    import app  # the zip's app.py, as Lambda's handler "app.app" names it

    answers = [app.app(event, Context()) for event in events]
    modules = sorted(
        {str(m.__file__) for m in list(sys.modules.values()) if getattr(m, "__file__", None)}
    )
    with open(results_file, "w") as handle:
        json.dump({"isolation": facts, "answers": answers, "module_files": modules}, handle)


if __name__ == "__main__":
    main()
