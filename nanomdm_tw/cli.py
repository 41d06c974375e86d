"""
``nanomdm-tw``: NanoMDM's command line, for a drop-in swap of the binary.

A NanoMDM unit file runs ``nanomdm -api KEY -ca ca.pem -storage mysql ...``;
replacing the binary's path with ``nanomdm-tw`` must keep working.  So the
flags are parsed as Go's ``flag`` package parses them: one or two dashes,
``-name value`` or ``-name=value``, booleans as ``-debug`` or
``-debug=false``, repeatable ``-storage``, parsing stops at the first
argument that is no flag.  Then the same settings checks and the same
service as ``twistd -n nanomdm`` run in the foreground, logging to stdout.
"""

import sys
from collections.abc import Iterator

from twisted.application.service import IService
from twisted.python import usage

from . import __version__
from .tap import Options, makeService, parse_go_bool

PROGRAM = "nanomdm-tw"
# Flags that collect every value given (NanoMDM's multi storage).
REPEATABLE = {"storage": "storage", "storage-dsn": "storage-dsn", "dsn": "storage-dsn",
              "storage-options": "storage-options"}  # fmt: skip


class FlagError(Exception):
    """Go's flag package would refuse the command line (exit status 2)."""


def flag_table() -> tuple[set[str], set[str]]:
    """Names of the flags taking a value and of the boolean ones, as twistd nanomdm has them."""
    valued = {name for name, *_ in Options.optParameters} | set(REPEATABLE)
    booleans = {name for name, *_ in Options.optFlags} | {"version", "help", "h"}
    return valued, booleans


def parse_go_flags(argv: list[str]) -> tuple[dict[str, object], list[str]]:
    """
    ``argv`` as Go's flag.Parse reads it: (values by flag name, arguments left over).

    Repeatable flags map to lists, booleans to bools, others to their last value.
    """
    valued, booleans = flag_table()
    values: dict[str, object] = {}
    arguments = iter(argv)
    for argument in arguments:
        if argument == "--":
            return values, list(arguments)
        if len(argument) < 2 or not argument.startswith("-"):
            return values, [argument, *arguments]
        name, has_value, value = argument.lstrip("-").partition("=")
        dashes = len(argument) - len(argument.lstrip("-"))
        if dashes > 2 or not name:
            raise FlagError(f"bad flag syntax: {argument}")
        if name in booleans:
            try:
                values[name] = parse_go_bool(value) if has_value else True
            except ValueError:
                raise FlagError(f"invalid boolean value {value!r} for -{name}: parse error")
            continue
        if name not in valued:
            raise FlagError(f"flag provided but not defined: -{name}")
        if not has_value:
            value = _next_value(arguments, name)
        if name in REPEATABLE:
            values.setdefault(REPEATABLE[name], []).append(value)
        else:
            values[name] = value
    return values, []


def _next_value(arguments: Iterator[str], name: str) -> str:
    try:
        return next(arguments)
    except StopIteration:
        raise FlagError(f"flag needs an argument: -{name}")


def options_from_flags(values: dict[str, object], environ=None) -> Options:
    """The same Options ``twistd nanomdm`` parses, filled from Go-style flag values."""
    options = Options(environ)
    for name, value in values.items():
        options[name] = value
        if isinstance(value, bool):
            options.explicit.add(name)
    options.postOptions()
    return options


def usage_text() -> str:
    valued, booleans = flag_table()
    lines = [f"Usage of {PROGRAM}:"]
    docs = {name: doc for name, _, _, doc in Options.optParameters}
    docs.update({name: doc for name, _, doc in Options.optFlags})
    docs.update(
        storage=Options.opt_storage.__doc__,
        **{"storage-dsn": "storage data source name (e.g. connection string or path)",
           "dsn": "data source name; deprecated: use -storage-dsn",
           "storage-options": "storage backend options"},
        version="print version",
    )  # fmt: skip
    for name in sorted(docs):
        kind = " value" if name in valued else ""
        lines.append(f"  -{name}{kind}\n    \t{docs[name]}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    try:
        values, leftover = parse_go_flags(argv)
    except FlagError as e:
        print(f"{PROGRAM}: {e} (see {PROGRAM} -h)", file=sys.stderr)
        raise SystemExit(2)
    if values.pop("help", False) or values.pop("h", False):
        sys.stdout.write(usage_text())
        raise SystemExit(0)
    if values.pop("version", False):
        print(__version__)
        raise SystemExit(0)
    if leftover:
        print(f"{PROGRAM}: ignoring arguments after the flags: {' '.join(leftover)}",
              file=sys.stderr)  # fmt: skip
    try:
        options = options_from_flags(values)
    except usage.UsageError as e:
        print(f"{PROGRAM}: {e}", file=sys.stderr)
        raise SystemExit(1)
    run(makeService(options))


def run(service: IService) -> None:
    """Serve in the foreground, logging to stdout, until SIGTERM or SIGINT."""
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner

    from .logs import text_observer

    globalLogBeginner.beginLoggingTo([text_observer(sys.stdout)])
    reactor.callWhenRunning(service.startService)
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run()


if __name__ == "__main__":
    main()
