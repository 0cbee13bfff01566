"""Lambda's Invoke API in front of the local app, for the events that are not HTTP requests.

On AWS, EventBridge invokes the function with ECS's task state changes. Locally,
`lambdamesh dev` takes the same events where `sam local start-lambda` and Lambda's runtime
interface emulator take theirs: ``POST /2015-03-31/functions/{name}/invocations`` with the
event as the body, answered with the function's result. So the AWS CLI works against it too:

    aws lambda invoke --endpoint-url http://127.0.0.1:8000 --function-name lambdamesh \\
        --cli-binary-format raw-in-base64-out --payload file://event.json out.json

and so does ``lambdamesh task-event``. Only loopback clients may invoke: on AWS only IAM
principals can, and a dev server listening on another address must not let the network
remove instances. Nor may a browser, loopback though it is: any web page can POST a plain-text
body to loopback with no CORS preflight, and an invocation's body is a whole event, an HTTP
request's ``Authorization`` header included (signed with the dev key, which is public).
Browsers mark every POST with ``Origin`` and ``Sec-Fetch-Site``, even after a DNS rebinding;
the AWS CLI, the SDKs and ``lambdamesh task-event`` send neither.

``X-Amz-Invocation-Type`` is read as Lambda reads it: ``Event`` is answered 202 (once the
function has run: locally there is no queue), ``DryRun`` 204 without running it.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable
from typing import Any

from lambdamesh.events import HttpRequest
from lambdamesh.invokers import Answer, LambdaContext

INVOKE_PATH = re.compile(r"/2015-03-31/functions/([A-Za-z0-9_:.-]{1,140})/invocations")
# Lambda's limit for a synchronous invocation's payload.
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
FunctionCall = Callable[[Any, Any], Any]
# Headers every browser sends with a POST, and no AWS client does.
BROWSER_HEADERS = ("Origin", "Sec-Fetch-Site")
JSON = [("Content-Type", "application/json")]


def invoke_url(base_url: str, function_name: str = "lambdamesh") -> str:
    return f"{base_url.rstrip('/')}/2015-03-31/functions/{function_name}/invocations"


class Invocations:
    """Answers Invoke API requests by calling ``function``; passes every other request to
    ``http`` (the local API Gateway or function URL)."""

    def __init__(
        self,
        function: FunctionCall,
        http: Callable[[HttpRequest], Answer],
        timeout_seconds: float,
        function_name: str = "lambdamesh",
    ) -> None:
        self.function = function
        self.http = http
        self.timeout_seconds = timeout_seconds
        self.function_name = function_name

    def __call__(self, request: HttpRequest) -> Answer:
        if not INVOKE_PATH.fullmatch(request.path):
            return self.http(request)
        if not _is_loopback(request.source_ip):
            return _error(403, "AccessDeniedException", "only loopback clients may invoke")
        if any(request.header(name) is not None for name in BROWSER_HEADERS):
            return _error(403, "AccessDeniedException", "a browser may not invoke")
        if request.method != "POST":
            return _error(405, "InvalidRequestContentException", "invoke with POST")
        if len(request.body) > MAX_PAYLOAD_BYTES:
            return _error(413, "RequestTooLargeException", "the payload exceeds 6 MB")
        try:
            event = json.loads(request.body or b"{}")
        except ValueError:
            return _error(400, "InvalidRequestContentException", "the payload is not JSON")
        kind = request.header("X-Amz-Invocation-Type")
        if kind == "DryRun":  # Lambda checks the request and runs nothing
            return Answer(204, JSON, b"")
        context = LambdaContext(self.timeout_seconds, self.function_name)
        try:
            result = self.function(event, context)
        except Exception as exc:  # the function's failure, reported as Lambda reports it
            body = {"errorMessage": str(exc), "errorType": type(exc).__name__}
            headers = [*JSON, ("X-Amz-Function-Error", "Unhandled")]
            return Answer(200, headers, json.dumps(body).encode())
        if kind == "Event":
            return Answer(202, JSON, b"")
        return Answer(200, JSON, json.dumps(result).encode())


def _is_loopback(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return (mapped or ip).is_loopback


def _error(status: int, kind: str, message: str) -> Answer:
    body = {"Type": "User", "message": message, "__type": kind}
    return Answer(status, JSON, json.dumps(body).encode())
