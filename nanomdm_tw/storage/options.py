"""
The ``-storage-options`` string: comma-separated ``key=value`` pairs.

NanoMDM's SQL backends know one option, ``delete=1``: drop results, queue
rows and commands once every enrollment has answered them.
"""

_BOOLEANS = {"1": True, "0": False}


def parse_storage_options(text: str) -> dict[str, bool]:
    """Parse ``delete=1`` style options; raise ValueError on anything else."""
    options: dict[str, bool] = {}
    if not text.strip():
        return options
    for pair in text.split(","):
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(
                f"invalid storage option {pair!r}: expected key=value, e.g. delete=1"
            )
        if key != "delete":
            raise ValueError(
                f"unknown storage option {key!r}: the only option is delete=0|1"
            )
        if value.strip() not in _BOOLEANS:
            raise ValueError(f"invalid value for delete option: {value!r} (use 0 or 1)")
        options[key] = _BOOLEANS[value.strip()]
    return options
