"""Backoff delays between retry attempts."""

from __future__ import annotations

import random

from .config import RetryConfig


def base_delay(config: RetryConfig, retry_number: int) -> float:
    """Return the un-jittered wait before retry `retry_number` (1 = 2nd call).

    It is initial_interval * multiplier ** (retry_number - 1), capped by
    max_interval.
    """
    if retry_number < 1:
        raise ValueError(f"retry_number must be 1 or greater, got {retry_number!r}")
    exponent = retry_number - 1
    # Past the cap the exact power does not matter, and a large exponent
    # would overflow a float.
    try:
        raw = config.initial_interval * config.multiplier**exponent
    except OverflowError:
        return config.max_interval
    return min(config.max_interval, raw)


def backoff_delay(
    config: RetryConfig,
    retry_number: int,
    previous_delay: float | None,
    rng: random.Random,
) -> float:
    """Return the wait before retry `retry_number`, with the configured jitter.

    The jitter modes, all drawn from `rng` and never above max_interval:

    - none: the base delay.
    - full: uniform in [0, base].
    - equal: base / 2 plus uniform in [0, base / 2].
    - decorrelated: uniform in [initial_interval, min(max_interval,
      3 * previous delay)], starting from initial_interval. The cap bounds
      the range rather than clamping a sample, so delays still vary once
      they reach the cap.
    """
    base = base_delay(config, retry_number)
    if config.jitter == "none":
        return base
    if config.jitter == "full":
        return rng.uniform(0.0, base)
    if config.jitter == "equal":
        return base / 2 + rng.uniform(0.0, base / 2)
    previous = config.initial_interval if previous_delay is None else previous_delay
    upper = min(config.max_interval, max(config.initial_interval, previous * 3))
    return rng.uniform(config.initial_interval, upper)
