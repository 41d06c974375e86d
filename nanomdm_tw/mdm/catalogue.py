"""
The MDM commands an operator sends most, with their arguments: data, not code.

``nanomdm-cmdr`` builds its command line from ``CATALOGUE``, and anything
else that offers commands to a person (an admin console) can build its
forms from the same entries and its plists with ``build_command``.  Each
argument says which key of the Command dictionary it fills and what kind
of value goes there, so a value is checked once, the same way everywhere.
"""

import plistlib
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

# The kinds of argument values and what each becomes in the plist.
STRING, INTEGER, BOOLEAN, STRINGS, DATA = "string", "integer", "boolean", "strings", "data"

# What DeviceInformation asks when no query is chosen: who and what the device is.
DEFAULT_DEVICE_QUERIES = (
    "DeviceName", "Model", "ModelName", "ProductName", "SerialNumber", "UDID",
    "OSVersion", "BuildVersion", "IsSupervised", "AvailableDeviceCapacity",
)  # fmt: skip

# DeviceInformation queries a person may pick from (a device answers others too).
KNOWN_DEVICE_QUERIES = (
    *DEFAULT_DEVICE_QUERIES, "DeviceCapacity", "BatteryLevel", "WiFiMAC", "BluetoothMAC",
    "EthernetMAC", "IMEI", "MEID", "ICCID", "PhoneNumber", "CellularTechnology",
    "IsRoaming", "IsActivationLockEnabled", "IsCloudBackupEnabled", "IsDeviceLocatorServiceEnabled",
    "IsDoNotDisturbInEffect", "IsMDMLostModeEnabled", "SupplementalBuildVersion",
    "SupplementalOSVersionExtra", "HostName", "LocalHostName", "TimeZone", "OSUpdateSettings",
    "ProvisioningUDID", "SystemIntegrityProtectionEnabled", "EASDeviceIdentifier",
    "AwaitingConfiguration", "MDMOptions", "LastCloudBackupDate", "ITunesStoreAccountIsActive",
)  # fmt: skip


class CommandArgumentError(ValueError):
    """A value that the command cannot carry; the message names the argument."""


def _pin(value: str) -> str:
    # Apple's Find My PIN (DeviceLock, EraseDevice on a Mac): six digits.
    if not re.fullmatch(r"[0-9]{6}", value):
        raise CommandArgumentError("must be six digits")
    return value


@dataclass(frozen=True)
class Argument:
    """One value of a command: its Command key, kind, and how a person gives it."""

    key: str
    kind: str
    help: str
    required: bool = False
    default: Any = None
    check: Callable[[Any], Any] | None = None
    # Values to offer a person (STRINGS: to tick); others are sent as well.
    choices: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The argument's name on a command line: the key in lower case with dashes."""
        return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", self.key).lower()

    def convert(self, value: Any) -> Any:
        """``value`` (text from a person, or already typed) as the plist needs it."""
        try:
            converted = _CONVERTERS[self.kind](value)
        except (TypeError, ValueError) as e:
            raise CommandArgumentError(f"{self.key}: {e}")
        if self.check is not None:
            try:
                converted = self.check(converted)
            except CommandArgumentError as e:
                raise CommandArgumentError(f"{self.key}: {e}")
        return converted


def _integer(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]+", value.strip()):
        return int(value)
    raise ValueError(f"expected a whole number, not {value!r}")


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, not {value!r}")


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [part for part in value.replace(",", " ").split() if part]
    if not isinstance(value, (list, tuple)):
        raise ValueError("expected a list of strings")
    items = list(value)
    if not all(isinstance(item, str) for item in items):
        raise ValueError("expected a list of strings")
    return items


def _data(value: Any) -> bytes:
    if not isinstance(value, (bytes, bytearray)) or not value:
        raise ValueError("expected the non-empty contents of a file")
    return bytes(value)


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected text")
    return value


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    STRING: _string, INTEGER: _integer, BOOLEAN: _boolean, STRINGS: _strings, DATA: _data,
}  # fmt: skip


@dataclass(frozen=True)
class CommandSpec:
    """
    One RequestType.  ``read_only``: asks the device something and changes
    nothing (what ``nanomdm-cmdr -r`` picks from).  ``destructive``: wipes
    data for good (a console asks for a typed confirmation).  ``shape`` places the
    argument values in the Command dictionary when they do not sit at its
    top level (ScheduleOSUpdate's ``Updates`` list).
    """

    request_type: str
    summary: str
    arguments: tuple[Argument, ...] = ()
    read_only: bool = False
    destructive: bool = False
    shape: Callable[[dict[str, Any]], dict[str, Any]] | None = field(default=None, repr=False)

    def fields(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The Command dictionary's keys besides RequestType, from values by key."""
        known = {argument.key for argument in self.arguments}
        unknown = sorted(set(values) - known)
        if unknown:
            raise CommandArgumentError(
                f"{self.request_type} takes no {', '.join(unknown)}"
            )
        fields = {}
        for argument in self.arguments:
            value = values.get(argument.key)
            if value is None or value == [] or value is False:
                value = argument.default
            if value is None:
                if argument.required:
                    raise CommandArgumentError(f"{self.request_type}: missing {argument.key}")
                continue
            fields[argument.key] = argument.convert(value)
        return self.shape(fields) if self.shape else fields


def _simple(request_type: str, summary: str, read_only: bool = False) -> CommandSpec:
    return CommandSpec(request_type, summary, read_only=read_only)


def _os_update(fields: dict[str, Any]) -> dict[str, Any]:
    return {"Updates": [fields]}


_NOTIFY_USER = Argument(
    "NotifyUser", BOOLEAN, "macOS: let the user save work first instead of restarting at once"
)
_LOCK_MESSAGE = Argument("Message", STRING, "shown on the lock screen")
_PHONE = Argument("PhoneNumber", STRING, "phone number shown on the lock screen")

CATALOGUE: dict[str, CommandSpec] = {
    spec.request_type: spec
    for spec in (
        CommandSpec(
            "DeviceInformation",
            "ask for device facts (queries: Model, OSVersion, ...)",
            (Argument("Queries", STRINGS, "the queries to answer",
                      default=list(DEFAULT_DEVICE_QUERIES), choices=KNOWN_DEVICE_QUERIES),),
            read_only=True,
        ),
        _simple("ProfileList", "list installed configuration profiles", True),
        _simple("ProvisioningProfileList", "list installed provisioning profiles", True),
        _simple("CertificateList", "list installed certificates", True),
        _simple("SecurityInfo", "ask for passcode, encryption and firmware security state", True),
        CommandSpec(
            "InstalledApplicationList",
            "list installed applications",
            (
                Argument("Identifiers", STRINGS, "only these bundle identifiers"),
                Argument("ManagedAppsOnly", BOOLEAN, "only the apps this server manages"),
            ),
            read_only=True,
        ),
        _simple("ManagedApplicationList", "list the apps this server manages", True),
        _simple("AvailableOSUpdates", "list OS updates the device can install", True),
        _simple("OSUpdateStatus", "ask how OS updates are progressing", True),
        _simple("UserList", "list users with a mobile account (macOS, Shared iPad)", True),
        CommandSpec(
            "RestartDevice",
            "restart the device",
            (_NOTIFY_USER, Argument("RebuildKernelCache", BOOLEAN, "macOS: rebuild the kernel cache")),
        ),
        _simple("ShutDownDevice", "shut the device down"),
        CommandSpec(
            "DeviceLock",
            "lock the device",
            (_LOCK_MESSAGE, _PHONE,
             Argument("PIN", STRING, "macOS: six-digit Find My PIN to unlock", check=_pin)),
        ),
        CommandSpec(
            "EraseDevice",
            "erase the device (all content and settings)",
            (
                Argument("PIN", STRING, "macOS: six-digit Find My PIN", check=_pin),
                Argument("PreserveDataPlan", BOOLEAN, "iOS: keep the cellular data plan"),
                Argument("DisallowProximitySetup", BOOLEAN, "iOS: no Quick Start after the erase"),
            ),
            destructive=True,
        ),
        CommandSpec(
            "InstallProfile",
            "install a configuration profile (.mobileconfig, signed or not)",
            (Argument("Payload", DATA, "the profile file", required=True),),
        ),
        CommandSpec(
            "RemoveProfile",
            "remove a configuration profile",
            (Argument("Identifier", STRING, "the profile's PayloadIdentifier", required=True),),
        ),
        CommandSpec(
            "InstallApplication",
            "install an App Store app",
            (Argument("iTunesStoreID", INTEGER, "the app's App Store ID", required=True),),
        ),
        CommandSpec(
            "RemoveApplication",
            "remove a managed app and its data",
            (Argument("Identifier", STRING, "the app's bundle identifier", required=True),),
            destructive=True,
        ),
        CommandSpec(
            "ScheduleOSUpdateScan",
            "look for OS updates now",
            (Argument("Force", BOOLEAN, "macOS: scan even if the user is busy"),),
        ),
        CommandSpec(
            "ScheduleOSUpdate",
            "download or install an OS update",
            (
                Argument("InstallAction", STRING,
                         "Default, DownloadOnly, InstallASAP, NotifyOnly, InstallLater,"
                         " InstallForceRestart", required=True),
                Argument("ProductVersion", STRING, "e.g. 17.2"),
                Argument("ProductKey", STRING, "the update's product key"),
                Argument("MaxUserDeferrals", INTEGER, "macOS: times the user may defer"),
                Argument("Priority", STRING, "macOS: Low or High"),
            ),
            shape=_os_update,
        ),
        CommandSpec(
            "EnableLostMode",
            "put a supervised device in Lost Mode",
            (_LOCK_MESSAGE, _PHONE, Argument("Footnote", STRING, "shown under the message")),
        ),
        _simple("DisableLostMode", "take the device out of Lost Mode"),
        _simple("DeviceLocation", "ask a device in Lost Mode where it is"),
        _simple("PlayLostModeSound", "play a sound on a device in Lost Mode"),
        _simple("DeviceConfigured", "let a device waiting in Setup Assistant continue"),
        _simple("ClearRestrictionsPassword", "clear the restrictions passcode"),
        _simple("EnableRemoteDesktop", "turn on Remote Desktop (macOS)"),
        _simple("DisableRemoteDesktop", "turn off Remote Desktop (macOS)"),
        _simple("LogOutUser", "log out the current user (Shared iPad)"),
        _simple("StopMirroring", "stop AirPlay mirroring"),
    )
}


def read_only_request_types() -> list[str]:
    """The commands that only ask, and need no value: safe to send anywhere."""
    return [
        name
        for name, spec in CATALOGUE.items()
        if spec.read_only and not any(a.required for a in spec.arguments)
    ]


def new_command_uuid() -> str:
    return str(uuid.uuid4()).upper()


def make_command(request_type: str, command_uuid: str | None = None, **fields: Any) -> bytes:
    """A command plist as an API client enqueues it; ``fields`` go in Command as they are."""
    return plistlib.dumps(
        {
            "CommandUUID": command_uuid or new_command_uuid(),
            "Command": {"RequestType": request_type, **fields},
        }
    )


def build_command(
    request_type: str, values: Mapping[str, Any] | None = None, command_uuid: str | None = None
) -> bytes:
    """
    The plist of a catalogue command with ``values`` (by Command key), checked;
    a RequestType outside the catalogue is sent without arguments.
    """
    spec = CATALOGUE.get(request_type)
    if spec is None:
        if values:
            raise CommandArgumentError(f"{request_type} is not in the catalogue: no arguments")
        return make_command(request_type, command_uuid)
    return make_command(request_type, command_uuid, **spec.fields(values or {}))
