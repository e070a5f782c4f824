"""What every config dataclass uses to validate itself in `__post_init__` (stdlib only).

A config lists its checks as (condition, message naming the CLI flag and the bad value); `require` raises
`ConfigError` with the first message whose condition fails, so a user reads which flag to change and why.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from .errors import ConfigError


def is_int(value: Any) -> bool:
    """An integer, and not a bool (JSON and YAML give True for 1 too easily)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite int or float, and not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def require(checks: Iterable[tuple[bool, str]]) -> None:
    """Raise `ConfigError(message + ".")` for the first (ok, message) whose `ok` is false.

    Args:
        checks: (condition, message) pairs, in the order they should be reported.
    """
    for ok, message in checks:
        if not ok:
            raise ConfigError(message + ".")
