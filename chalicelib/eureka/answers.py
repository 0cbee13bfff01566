"""Eureka's answers over HTTP: a document in JSON or XML, as the client's ``Accept`` asks
(Eureka's rule: JSON when it names ``json``, else XML); an empty body where Eureka sends none.

The app imports this module at start; the records and the codec load on a Eureka client's
first request, so a function that serves none never pays for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chalice.app import Response

from chalicelib.config import MAX_BODY_LIMIT
from chalicelib.errors import LambdaMeshError

if TYPE_CHECKING:
    from chalicelib.eureka.records import Application, Applications, EurekaInstance


def document(value: Applications | Application | EurekaInstance, accept: str | None) -> Response:
    from chalicelib.eureka import wire
    from chalicelib.eureka.records import Application, Applications

    fmt: wire.Format = "json" if wire.wants_json(accept) else "xml"
    if isinstance(value, Applications):
        body = wire.render_applications(value, fmt)
    elif isinstance(value, Application):
        body = wire.render_application(value, fmt)
    else:
        body = wire.render_instance(value, fmt)
    if len(body) > MAX_BODY_LIMIT:
        raise AnswerTooLarge(
            f"the answer is {len(body)} bytes and a Lambda answers at most {MAX_BODY_LIMIT}: "
            "the registry has outgrown one answer (fewer services or instances, or a lower "
            "LAMBDAMESH_MAX_INSTANCES_PER_SERVICE)"
        )
    return Response(body=body, status_code=200, headers={"Content-Type": wire.media_type(fmt)})


class AnswerTooLarge(LambdaMeshError):
    """A document larger than a Lambda can return, said as such rather than left to fail as
    the runtime's error: the operator must act, and the error code counts each one."""

    code = "eureka_answer_too_large"


def empty(status: int = 200) -> Response:
    return Response(body=b"", status_code=status)
