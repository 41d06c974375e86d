"""
``nanomdm-cmdr``: print an MDM command plist, ready for the API.

One subcommand per catalogue entry (nanomdm_tw/mdm/catalogue.py), with a
fresh CommandUUID each time (or ``--uuid``); ``-r`` picks a random
read-only command, as NanoMDM's tools/cmdr.py does.  The plist goes to
stdout, for ``curl -T - .../v1/enqueue/ID`` or ``nanomdm-tw-enqueue ID``::

    nanomdm-cmdr DeviceLock --message "Call IT" --pin 123456 | nanomdm-tw-enqueue $ID
"""

import argparse
import random
import re
import sys
from pathlib import Path

from ..mdm.catalogue import (
    BOOLEAN,
    CATALOGUE,
    DATA,
    STRINGS,
    Argument,
    CommandArgumentError,
    CommandSpec,
    build_command,
    read_only_request_types,
)

PROGRAM = "nanomdm-cmdr"


def _add_argument(parser: argparse.ArgumentParser, argument: Argument) -> None:
    """The command-line form of a catalogue argument: kind decides the shape."""
    help_text = argument.help
    if argument.kind == BOOLEAN:
        parser.add_argument("--" + argument.name, dest=argument.key, action="store_true",
                            help=help_text)  # fmt: skip
    elif argument.kind == STRINGS:
        # cmdr.py's form: DeviceInformation Model OSVersion ...
        parser.add_argument(argument.key, nargs="*", metavar=argument.name.upper(),
                            help=help_text)  # fmt: skip
    elif argument.kind == DATA:
        parser.add_argument(argument.key, metavar=argument.name.upper() + "_FILE",
                            type=Path, help=help_text)  # fmt: skip
    elif argument.required:
        parser.add_argument(argument.key, metavar=argument.name.upper(), help=help_text)
    else:
        parser.add_argument("--" + argument.name, dest=argument.key, help=help_text)


def _add_command(commands: argparse._SubParsersAction, spec: CommandSpec) -> None:
    parser = commands.add_parser(spec.request_type, help=spec.summary,
                                 description=spec.summary)  # fmt: skip
    for argument in spec.arguments:
        _add_argument(parser, argument)
    parser.set_defaults(spec=spec)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Print an MDM command plist (pipe it to nanomdm-tw-enqueue or curl).",
    )
    top.add_argument("-u", "--uuid", help="CommandUUID (default: a new random UUID)")
    top.add_argument("-r", "--random", action="store_true",
                     help="a random read-only command: "
                          + ", ".join(read_only_request_types()))  # fmt: skip
    commands = top.add_subparsers(title="commands", metavar="REQUEST_TYPE")
    for spec in CATALOGUE.values():
        _add_command(commands, spec)
    other = commands.add_parser(
        "command", help="any other RequestType, without arguments",
        description="any other RequestType, without arguments",
    )  # fmt: skip
    other.add_argument("request_type", metavar="REQUEST_TYPE")
    return top


def _values(spec: CommandSpec, args: argparse.Namespace) -> dict:
    """The namespace's values by Command key, files read."""
    values = {}
    for argument in spec.arguments:
        value = getattr(args, argument.key, None)
        if argument.kind == DATA and value is not None:
            value = value.read_bytes()
        values[argument.key] = value
    return values


def command_plist(argv: list[str], choose=random.choice) -> bytes:
    """The plist ``argv`` asks for; argparse's exit on a mistake."""
    top = parser()
    args = top.parse_args(argv)
    spec = getattr(args, "spec", None)
    other = getattr(args, "request_type", None)
    if args.random == (spec is not None or other is not None):
        top.error("give either -r or one command")
    try:
        if args.random:
            return build_command(choose(read_only_request_types()), command_uuid=args.uuid)
        if other is not None:
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9.]*", other):
                top.error(f"not a RequestType: {other!r}")
            return build_command(other, command_uuid=args.uuid)
        return build_command(spec.request_type, _values(spec, args), args.uuid)
    except (CommandArgumentError, OSError) as e:
        top.error(str(e))


def main(argv: list[str] | None = None) -> None:
    plist = command_plist(sys.argv[1:] if argv is None else argv)
    sys.stdout.buffer.write(plist)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
