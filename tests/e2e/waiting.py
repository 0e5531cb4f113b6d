"""Polling for the end-to-end tests: wait until a condition holds, or give up."""

import time
from collections.abc import Callable
from typing import Any


def wait_for(predicate: Callable[[], Any], timeout: float) -> Any:
    """The predicate's first truthy value within `timeout` seconds (polled every 0.1 s), or
    None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.1)
    return None
