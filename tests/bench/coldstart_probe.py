"""One cold start, timed: run as ``python -I -S -B coldstart_probe.py TASK_DIR MODE [FILE]``.

``-I -S`` keeps everything but the standard library and ``TASK_DIR`` (an unpacked
deployment.zip) off the path, and ``-B`` writes no bytecode: as on Lambda, whose ``/var/task``
is read-only. Only the standard library is used before ``TASK_DIR`` is on the path. Prints one
JSON object of seconds (and the third-party modules the app imported: its dependencies, none
of the project's own modules, ``OWN``).

MODE:
  bare    import the modules listed in FILE (the app's dependencies), nothing else
  import  ``import app``
  first   ``import app``, then invoke it with the event in FILE, twice; then run the
          SnapStart after-restore hook and invoke it once more
"""

import json
import sys
import time

STARTED = time.perf_counter()


class Context:
    function_name = "lambdamesh-bench"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:111122223333:function:lambdamesh-bench"
    aws_request_id = "00000000-0000-0000-0000-000000000000"
    log_group_name = "/aws/lambda/lambdamesh-bench"
    log_stream_name = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 29_000


# The project's own top-level modules in the package: never part of the baseline. The routing
# package is vendored into the zip beside the dependencies, but it is ours.
OWN = ("app", "chalicelib", "lambdamesh_routing")


def own(name: str) -> bool:
    return name.split(".")[0] in OWN


def main() -> None:
    task, mode = sys.argv[1], sys.argv[2]
    sys.path.insert(0, task)
    result: dict[str, object] = {}
    if mode == "bare":
        with open(sys.argv[3]) as handle:
            names = json.load(handle)
        started = time.perf_counter()
        for name in names:
            __import__(name)
        result["import"] = time.perf_counter() - started
    else:
        started = time.perf_counter()
        import app

        result["import"] = time.perf_counter() - started
        if mode == "first":
            from chalicelib import wiring

            with open(sys.argv[3]) as handle:
                event = json.load(handle)
            for label in ("first", "second", "restore"):
                started = time.perf_counter()
                if label == "restore":
                    wiring.after_restore()
                answer = app.app(event, Context())
                result[label] = time.perf_counter() - started
                assert answer["statusCode"] == 200, answer
        result["modules"] = sorted(
            name
            for name, module in list(sys.modules.items())
            if str(getattr(module, "__file__", "") or "").startswith(task) and not own(name)
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
