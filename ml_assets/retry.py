"""Retries with exponential backoff for transient source errors (D7, O3)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.exceptions import ReadTimeoutError

T = TypeVar("T")
log = logging.getLogger("ml_assets.retry")

# botocore's network errors (S3 landing zones) are transient too.
TRANSIENT: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError, InterruptedError,
                                              BotoConnectionError, ReadTimeoutError)


class SourceUnavailable(RuntimeError):
    """A source kept failing after every retry."""


def with_retries(fn: Callable[[], T], what: str, attempts: int = 4, base_delay_s: float = 0.5,
                 transient: tuple[type[BaseException], ...] = TRANSIENT, sleep: Callable[[float], None] = time.sleep) -> T:
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except transient as e:
            if attempt == attempts:
                raise SourceUnavailable(f"{what}: still failing after {attempts} attempts: {type(e).__name__}: {e}") from e
            delay = base_delay_s * 2 ** (attempt - 1)
            log.warning("%s: attempt %d/%d failed (%s); retrying in %.1fs", what, attempt, attempts, e, delay)
            sleep(delay)
    raise AssertionError("unreachable")
