"""Go-style durations (``24h``, ``1h30m``, ``500ms``), as NanoMDM's flags and DSNs write them."""

import re

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str, days: bool = False) -> float:
    """
    The duration in seconds; ``0`` alone is zero.  ValueError when unreadable.

    ``days``: also accept a ``d`` unit (``30d``), which Go's durations lack
    but a retention period reads better with.
    """
    text = text.strip()
    if text == "0":
        return 0.0
    parts = _DURATION.findall(text)
    if (
        not parts
        or "".join(n + u for n, u in parts) != text
        or (not days and any(u == "d" for _, u in parts))
    ):
        example = "30d, 720h" if days else "30s, 5m, 24h"
        raise ValueError(f"invalid duration {text!r} (use e.g. {example})")
    return sum(float(n) * _UNITS[u] for n, u in parts)
