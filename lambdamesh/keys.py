"""Where the CLI finds the key that signs tokens: the environment, or the stage's secret."""

from __future__ import annotations

import os

from chalicelib.auth import parse_keys
from chalicelib.config import MIN_SIGNING_KEY_LENGTH
from chalicelib.errors import ConfigError

# Public by design: `lambdamesh dev` refuses to listen beyond loopback while it signs with it.
DEV_SIGNING_KEY = "lambdamesh-dev-only-signing-key"


def signing_key(secret: str | None = None) -> bytes:
    """The key that signs: the first of the secret's (or ``LAMBDAMESH_SIGNING_KEY``'s)
    comma-separated keys."""
    text = _secret_value(secret) if secret else os.environ.get("LAMBDAMESH_SIGNING_KEY", "")
    try:
        return parse_keys(text)[0]
    except ConfigError:
        where = f"the secret {secret!r}" if secret else "LAMBDAMESH_SIGNING_KEY"
        raise ConfigError(
            f"{where} must hold the app's signing key (at least {MIN_SIGNING_KEY_LENGTH} "
            f"characters; `lambdamesh dev` uses {DEV_SIGNING_KEY} unless it is set)"
        ) from None


def _secret_value(secret: str) -> str:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        answer = boto3.client("secretsmanager").get_secret_value(SecretId=secret)
    except (BotoCoreError, ClientError) as exc:
        raise ConfigError(f"cannot read the secret {secret!r}: {exc}") from None
    return str(answer.get("SecretString") or "")
