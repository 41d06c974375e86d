"""
Decoding of what devices and API clients send: check-ins, command reports, commands.

Every decoded message keeps the exact bytes it came from (``raw``): storage
keeps raw plists, the webhook forwards them, and commands go to devices as
the API received them.  Decoding failures raise MessageError (HTTP 400).
"""

from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..errors import MessageError
from . import plist
from .enrollment import EnrollID, Enrollment

REPORT_STATUSES = frozenset(
    {"Idle", "Acknowledged", "Error", "CommandFormatError", "NotNow"}
)


def _load_dict(raw: bytes, what: str) -> dict[str, Any]:
    if not raw:
        raise MessageError(f"empty {what}")
    _require_text(raw, what)
    try:
        value = plist.loads(raw)
    except Exception as e:  # plistlib raises many types on bad input
        raise MessageError(f"{what} is not a valid plist: {e.__class__.__name__}")
    if not isinstance(value, dict):
        raise MessageError(f"{what} plist is not a dictionary")
    return value


def _require_text(raw: bytes, what: str) -> None:
    """
    Refuse what is not UTF-8 text without NUL, so not an XML plist as devices send.

    Check-ins, results and commands are kept as text (NanoMDM's MySQL and
    PostgreSQL columns, the webhook's JSON), and those refuse anything else:
    a binary or UTF-16 plist, or a NUL that only a binary plist can carry,
    would be a 500 there and stored elsewhere. One answer on every backend.
    """
    if b"\x00" not in raw:
        try:
            raw.decode("utf-8")
            return
        except UnicodeDecodeError:
            pass
    raise MessageError(f"{what}: send the plist as XML in UTF-8 (it is kept as text)")


# The plist keys of Enrollment's fields, in their order.
_ENROLLMENT_KEYS = (
    "UDID", "UserID", "UserShortName", "UserLongName", "EnrollmentID", "EnrollmentUserID"
)


class _Fields:
    """Typed access to a plist dictionary, raising MessageError on wrong types."""

    def __init__(self, values: dict[str, Any], what: str):
        self._values = values
        self._what = what

    def _get(self, key: str, kind: type | tuple[type, ...], default: Any) -> Any:
        value = self._values.get(key, default)
        if value is not default and not isinstance(value, kind):
            raise MessageError(f"{self._what}: {key} has the wrong type")
        return value

    def string(self, key: str, required: bool = False) -> str:
        # The most read kind, so without _get's extra call.
        value = self._values.get(key, "")
        if not isinstance(value, str):
            raise MessageError(f"{self._what}: {key} has the wrong type")
        if required and not value:
            raise MessageError(f"{self._what}: missing {key}")
        return value

    def data(self, key: str, required: bool = False) -> bytes:
        value = self._get(key, bytes, b"")
        if required and not value:
            raise MessageError(f"{self._what}: missing {key}")
        return value

    def boolean(self, key: str) -> bool:
        return self._get(key, bool, False)

    def dictionary(self, key: str) -> dict[str, Any]:
        return self._get(key, dict, {})

    def enrollment(self) -> Enrollment:
        return Enrollment(*map(self.string, _ENROLLMENT_KEYS))


@dataclass(slots=True, kw_only=True)
class Message:
    """What every device message has: who sent it, and its exact bytes."""

    enrollment: Enrollment
    enroll_id: EnrollID
    raw: bytes = field(repr=False)
    # The decoded plist; of a big body, only its keys (see resources/mdm.py).
    values: dict[str, Any] = field(repr=False)


@dataclass(slots=True, kw_only=True)
class CheckinMessage(Message):
    """Base of the check-in messages; ``message_type`` names the subclass."""

    message_type: ClassVar[str] = ""

    @classmethod
    def _decode_fields(cls, f: _Fields) -> dict[str, Any]:
        return {}


@dataclass(slots=True, kw_only=True)
class Authenticate(CheckinMessage):
    message_type: ClassVar[str] = "Authenticate"
    topic: str
    serial_number: str = ""
    device_name: str = ""
    model: str = ""
    model_name: str = ""
    product_name: str = ""
    os_version: str = ""
    build_version: str = ""

    @classmethod
    def _decode_fields(cls, f: _Fields) -> dict[str, Any]:
        return dict(
            topic=f.string("Topic", required=True),
            serial_number=f.string("SerialNumber"),
            device_name=f.string("DeviceName"),
            model=f.string("Model"),
            model_name=f.string("ModelName"),
            product_name=f.string("ProductName"),
            os_version=f.string("OSVersion"),
            build_version=f.string("BuildVersion"),
        )


@dataclass(slots=True, kw_only=True)
class TokenUpdate(CheckinMessage):
    message_type: ClassVar[str] = "TokenUpdate"
    topic: str
    token: bytes
    push_magic: str
    unlock_token: bytes = b""
    awaiting_configuration: bool = False

    @classmethod
    def _decode_fields(cls, f: _Fields) -> dict[str, Any]:
        return dict(
            topic=f.string("Topic", required=True),
            token=f.data("Token", required=True),
            push_magic=f.string("PushMagic", required=True),
            unlock_token=f.data("UnlockToken"),
            awaiting_configuration=f.boolean("AwaitingConfiguration"),
        )


@dataclass(slots=True, kw_only=True)
class CheckOut(CheckinMessage):
    message_type: ClassVar[str] = "CheckOut"


@dataclass(slots=True, kw_only=True)
class UserAuthenticate(CheckinMessage):
    message_type: ClassVar[str] = "UserAuthenticate"
    digest_response: str = ""

    @classmethod
    def _decode_fields(cls, f: _Fields) -> dict[str, Any]:
        return dict(digest_response=f.string("DigestResponse"))


@dataclass(slots=True, kw_only=True)
class SetBootstrapToken(CheckinMessage):
    message_type: ClassVar[str] = "SetBootstrapToken"
    bootstrap_token: bytes = b""
    awaiting_configuration: bool = False

    @classmethod
    def _decode_fields(cls, f: _Fields) -> dict[str, Any]:
        return dict(
            bootstrap_token=f.data("BootstrapToken"),
            awaiting_configuration=f.boolean("AwaitingConfiguration"),
        )


@dataclass(slots=True, kw_only=True)
class GetBootstrapToken(CheckinMessage):
    message_type: ClassVar[str] = "GetBootstrapToken"
    awaiting_configuration: bool = False

    @classmethod
    def _decode_fields(cls, f: _Fields) -> dict[str, Any]:
        return dict(awaiting_configuration=f.boolean("AwaitingConfiguration"))


@dataclass(slots=True, kw_only=True)
class DeclarativeManagement(CheckinMessage):
    message_type: ClassVar[str] = "DeclarativeManagement"
    endpoint: str
    data: bytes = b""

    @classmethod
    def _decode_fields(cls, f: _Fields) -> dict[str, Any]:
        return dict(endpoint=f.string("Endpoint", required=True), data=f.data("Data"))


@dataclass(slots=True, kw_only=True)
class GetToken(CheckinMessage):
    message_type: ClassVar[str] = "GetToken"
    token_service_type: str
    token_parameters: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def _decode_fields(cls, f: _Fields) -> dict[str, Any]:
        return dict(
            token_service_type=f.string("TokenServiceType", required=True),
            token_parameters=f.dictionary("TokenParameters"),
        )


CHECKIN_TYPES: dict[str, type[CheckinMessage]] = {
    cls.message_type: cls
    for cls in (
        Authenticate,
        TokenUpdate,
        CheckOut,
        UserAuthenticate,
        SetBootstrapToken,
        GetBootstrapToken,
        DeclarativeManagement,
        GetToken,
    )
}


def _identify(f: _Fields, what: str) -> tuple[Enrollment, EnrollID]:
    enrollment = f.enrollment()
    ambiguous = enrollment.id_parts_with_separator()
    if ambiguous:
        raise MessageError(f"{what}: identifier {ambiguous[0]!r} contains ':'")
    enroll_id = enrollment.resolve()
    if enroll_id is None:
        raise MessageError(f"{what}: no enrollment identifier (UDID or EnrollmentID)")
    return enrollment, enroll_id


def decode_checkin(raw: bytes) -> CheckinMessage:
    """Decode a check-in plist into its message type."""
    values = _load_dict(raw, "check-in")
    f = _Fields(values, "check-in")
    message_type = f.string("MessageType", required=True)
    cls = CHECKIN_TYPES.get(message_type)
    if cls is None:
        raise MessageError(f"unknown check-in MessageType {message_type!r}")
    enrollment, enroll_id = _identify(f, message_type)
    return cls(
        enrollment=enrollment,
        enroll_id=enroll_id,
        raw=raw,
        values=values,
        **cls._decode_fields(f),
    )


@dataclass(slots=True, kw_only=True)
class CommandReport(Message):
    """A command result (or Idle) sent to the command endpoint."""

    status: str
    command_uuid: str = ""
    request_type: str = ""
    error_chain: list[Any] = field(default_factory=list)

    @property
    def is_idle(self) -> bool:
        return self.status == "Idle"


def decode_command_report(raw: bytes) -> CommandReport:
    """Decode a command report; every status but Idle must name its command."""
    values = _load_dict(raw, "command report")
    f = _Fields(values, "command report")
    status = f.string("Status", required=True)
    if status not in REPORT_STATUSES:
        raise MessageError(f"command report: unknown Status {status!r}")
    command_uuid = f.string("CommandUUID")
    if status != "Idle" and not command_uuid:
        raise MessageError("command report: missing CommandUUID")
    error_chain = values.get("ErrorChain", [])
    if not isinstance(error_chain, list):
        raise MessageError("command report: ErrorChain has the wrong type")
    enrollment, enroll_id = _identify(f, "command report")
    return CommandReport(
        enrollment=enrollment,
        enroll_id=enroll_id,
        raw=raw,
        values=values,
        status=status,
        command_uuid=command_uuid,
        request_type=f.string("RequestType"),
        error_chain=error_chain,
    )


@dataclass(slots=True, frozen=True)
class Command:
    """An MDM command as the API received it; ``raw`` is what the device gets."""

    command_uuid: str
    request_type: str
    raw: bytes = field(repr=False)


def decode_command(raw: bytes) -> Command:
    """
    Decode a raw command plist; it must have CommandUUID and Command.RequestType.

    Like every message it must be UTF-8 text without NUL (``_require_text``).
    """
    values = _load_dict(raw, "command")
    f = _Fields(values, "command")
    command_uuid = f.string("CommandUUID", required=True)
    request_type = _Fields(f.dictionary("Command"), "command").string(
        "RequestType", required=True
    )
    return Command(command_uuid=command_uuid, request_type=request_type, raw=raw)
