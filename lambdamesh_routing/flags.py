"""On/off settings read from the environment: one spelling for the Lambda and the sidecar, so a
value that switches a behaviour on in one never stops the other, or is read as off.

Case and surrounding whitespace are ignored; an unset or blank variable (ECS task definitions
often carry "") takes the setting's default; any other word is refused rather than guessed.
"""

from __future__ import annotations

TRUE_WORDS = ("true", "1", "yes", "on")
FALSE_WORDS = ("false", "0", "no", "off")
# Longest part of a refused value quoted back: the message ends up in a log line.
_SHOWN = 60


class InvalidFlag(ValueError):
    """The value is no flag word; the message follows the variable's name."""


def parse_flag(raw: str | None, default: bool) -> bool:
    if raw is None or not raw.strip():
        return default
    value = raw.strip().lower()
    if value in TRUE_WORDS:
        return True
    if value in FALSE_WORDS:
        return False
    shown = raw if len(raw) <= _SHOWN else f"{raw[:_SHOWN]}..."
    raise InvalidFlag(f"must be {_words()}, got {shown!r}")


def _words() -> str:
    pairs = ", ".join(f"{on}/{off}" for on, off in zip(TRUE_WORDS, FALSE_WORDS, strict=True))
    return f"one of {pairs} (any case)"
