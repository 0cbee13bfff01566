"""Reads the token signing key from Secrets Manager (or SSM) through Powertools Parameters.

A Lambda in a VPC with no route to the store would otherwise wait out botocore's default
timeouts and retries (a minute and more) on every authenticated call until API Gateway gives
up at 29 s. Here a read gives up within a few seconds: the caller gets a quick 503 with
``Retry-After`` and the log names the cause. What was read is kept for ``max_age`` seconds
(``LAMBDAMESH_KEY_STORE_SECONDS``, ``MAX_AGE`` by default), so a rotated key ("NEW,OLD" in the
secret) or a mesh CA's next step reaches warm Lambdas without a redeploy.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.session import Session

from chalicelib.errors import ConfigError, KeyStoreUnavailable
from chalicelib.observability import logger

MAX_AGE = 300
CONNECT_TIMEOUT = 1.0
READ_TIMEOUT = 2.0
# One try and one retry: at most about 2 x (1 s + 2 s) before the caller hears back.
MAX_ATTEMPTS = 2
BOTO_CONFIG = Config(
    connect_timeout=CONNECT_TIMEOUT,
    read_timeout=READ_TIMEOUT,
    retries={"total_max_attempts": MAX_ATTEMPTS, "mode": "standard"},
)
SIGNING_KEY = "the token signing key"
# Errors that waiting will not cure: the operator must fix the secret or the role.
PERMANENT = frozenset(
    {
        "ResourceNotFoundException",
        "AccessDeniedException",
        "AccessDenied",
        "ParameterNotFound",
        "DecryptionFailure",
        "InvalidRequestException",
        "InvalidParameterException",
        "ValidationException",
        "KMSAccessDeniedException",
    }
)


class KeyStore:
    """The two stores a signing key may live in, each client built once, on first use.

    After a read fails for want of an answer, reads of that item fail at once for
    ``KeyStoreUnavailable.retry_after`` seconds (what the callers are told to wait), so a
    store that is down costs each caller a quick 503, not a wait of seconds each.
    """

    def __init__(
        self,
        config: Config = BOTO_CONFIG,
        clock: Callable[[], float] = time.monotonic,
        secrets: Any = None,
        ssm: Any = None,
        session: Callable[[], Session] | None = None,
        region: str | None = None,
        max_age: int = MAX_AGE,
    ) -> None:
        """``secrets`` and ``ssm`` are Powertools providers; by default each is built on
        first use, so a stage that keeps its key elsewhere never pays for the client.

        ``session`` gives the botocore session to build their clients from: the registry's,
        so the endpoint and partition data botocore loads for its first client (tens of ms
        of a cold start) is loaded once, not again for the key store.
        """
        self._config = config
        self._clock = clock
        self._secrets: Any = secrets
        self._ssm: Any = ssm
        self._session = session
        self._region = region
        self._max_age = max_age
        self._failing_until: dict[str, float] = {}

    def _client(self, service: str) -> Any:
        if self._session is None:
            return None  # the provider builds its own, through boto3
        return self._session().create_client(service, region_name=self._region, config=self._config)

    def secret(self, name: str, what: str = SIGNING_KEY) -> str:
        """``what`` names the item in errors and logs (never its value)."""
        if self._secrets is None:
            from aws_lambda_powertools.utilities.parameters import SecretsProvider

            client = self._client("secretsmanager")
            self._secrets = SecretsProvider(boto_config=self._config, boto3_client=client)
        return self._read(self._secrets, name, {}, what)

    def parameter(self, name: str) -> str:
        if self._ssm is None:
            from aws_lambda_powertools.utilities.parameters import SSMProvider

            client = self._client("ssm")
            self._ssm = SSMProvider(boto_config=self._config, boto3_client=client)
        return self._read(self._ssm, name, {"decrypt": True}, SIGNING_KEY)

    def forget(self) -> None:
        """Drop what was read and every remembered failure, and close the clients' pooled
        connections: after a SnapStart restore the next read asks the store again."""
        self._failing_until.clear()
        for provider in (self._secrets, self._ssm):
            if provider is not None:
                provider.clear_cache()
                provider.client.close()

    def _read(self, provider: Any, name: str, options: dict[str, Any], what: str) -> str:
        from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

        if self._clock() < self._failing_until.get(name, 0.0):
            raise KeyStoreUnavailable(_unavailable(what))
        try:
            value = provider.get(name, max_age=self._max_age, **options)
        except GetParameterError as exc:
            error = _classified(name, exc, what)
            if isinstance(error, KeyStoreUnavailable):
                self._failing_until[name] = self._clock() + (error.retry_after or 0)
            raise error from exc
        self._failing_until.pop(name, None)
        return str(value or "")


def _unavailable(what: str) -> str:
    return f"{what} could not be read; try again shortly"


def _classified(name: str, exc: Exception, what: str) -> ConfigError | KeyStoreUnavailable:
    """Log the cause (never the value) and pick the caller's answer."""
    cause = exc.__cause__ or exc.__context__
    code = cause.response.get("Error", {}).get("Code") if isinstance(cause, ClientError) else None
    extra = {"key_store_item": name, "cause": str(cause or exc), "error_code": code}
    if code in PERMANENT:
        logger.error(f"{what} cannot be read", extra=extra)
        return ConfigError(f"{what} is not available: server misconfiguration")
    logger.warning("the key store did not answer in time", extra=extra)
    return KeyStoreUnavailable(_unavailable(what))
