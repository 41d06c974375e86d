"""Go-style durations (``24h``, ``1h30m``, ``500ms``), as NanoMDM's flags and DSNs write them."""

import re

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """The duration in seconds; ``0`` alone is zero.  ValueError when unreadable."""
    text = text.strip()
    if text == "0":
        return 0.0
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"invalid duration {text!r} (use e.g. 30s, 5m, 24h)")
    return sum(float(n) * _UNITS[u] for n, u in parts)
