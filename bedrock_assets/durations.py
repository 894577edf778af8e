"""Durations as people write them in a spec: ``90s``, ``45m``, ``6h``, ``2d``, or combined (``1h30m``)."""

from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"(\d+(?:\.\d+)?)(d|h|m|s)")
_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}


def parse_duration(text: str) -> timedelta:
    """``"1h30m"`` -> 90 minutes; ValueError naming the expected form otherwise."""
    compact = str(text).strip().replace(" ", "")
    parts = _PART.findall(compact)
    if not compact or "".join(n + u for n, u in parts) != compact:
        raise ValueError(
            f"{text!r} is not a duration: write a number and a unit (s, m, h, d), e.g. 90s, 45m, 6h, 1h30m"
        )
    return timedelta(seconds=sum(float(n) * _UNITS[u] for n, u in parts))


def describe(delta: timedelta) -> str:
    """A duration for people: ``2h05m``, ``4m30s``, ``12s``."""
    seconds = max(int(delta.total_seconds()), 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"
