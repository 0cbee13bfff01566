"""Plain one-line logs on stderr: ``lambdamesh-sidecar: LEVEL message key=value ...``.

ECS ships stderr to CloudWatch line by line and adds the timestamp itself, so a record is one
line with nothing but what a reader needs; values with spaces or newlines are JSON-quoted so
a registry error message can never break a record in two.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import TextIO

LOGGER_NAME = "lambdamesh_sidecar"
PREFIX = "lambdamesh-sidecar:"


def configure(level: str, stream: TextIO | None = None) -> logging.Logger:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter(f"{PREFIX} %(levelname)s %(message)s"))
    logger = logging.getLogger(LOGGER_NAME)
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False
    return logger


def fields(**values: object) -> str:
    """``key=value`` pairs in the given order, leaving out the ones that are None."""
    return " ".join(f"{key}={_quoted(value)}" for key, value in values.items() if value is not None)


def _quoted(value: object) -> str:
    text = str(value)
    if text and not any(char.isspace() or char in '"=' for char in text):
        return text
    return json.dumps(text)
