"""
A simulated Apple device: it enrolls, checks in, fetches commands and answers them.

Users run it as ``nanomdm-sim`` to watch the server work without an Apple
device; the tests and the benchmark drive the same ``SimulatedDevice``.
"""

import argparse
import base64
import json
import plistlib
import secrets
import sys
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import treq
from treq.client import HTTPClient
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectError
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers

from ..crypto.cms import sign_detached
from ..mdm import catalogue
from .enqueue import Answer, enqueue_path_form
from ..mdm.enrollment import SHARED_IPAD_USER_ID, EnrollID, Enrollment, EnrollType

CHECKIN_CONTENT_TYPE = "application/x-apple-aspen-mdm-checkin"
REPORT_CONTENT_TYPE = "application/x-apple-aspen-mdm"
# Commands as an API client makes them (the tests and the benchmark import it from here).
make_command = catalogue.make_command
DEFAULT_TOPIC = "com.apple.mgmt.External.00000000-0000-0000-0000-000000000000"

ENROLL_TYPES = {
    "device": EnrollType.DEVICE,
    "user": EnrollType.USER,
    "shared-ipad": EnrollType.SHARED_IPAD,
    "user-enrollment-device": EnrollType.USER_ENROLLMENT_DEVICE,
    "user-enrollment": EnrollType.USER_ENROLLMENT,
}

# Enrollment attribute -> the plist key a device sends it under.
_PLIST_KEYS = (
    ("udid", "UDID"),
    ("user_id", "UserID"),
    ("user_short_name", "UserShortName"),
    ("user_long_name", "UserLongName"),
    ("enrollment_id", "EnrollmentID"),
    ("enrollment_user_id", "EnrollmentUserID"),
)


class SimulatorError(Exception):
    """The server answered something a real device would not accept."""


@dataclass(frozen=True)
class Identity:
    """A device identity certificate and key, as SCEP or ACME gives a device."""

    cert: x509.Certificate
    key: Any

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "identity.pem").write_bytes(self.cert_pem)
        key_path = folder / "identity.key"
        key_path.touch(mode=0o600)
        key_path.write_bytes(
            self.key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )

    @classmethod
    def load(cls, folder: Path) -> "Identity":
        return cls(
            x509.load_pem_x509_certificate((folder / "identity.pem").read_bytes()),
            serialization.load_pem_private_key(
                (folder / "identity.key").read_bytes(), None
            ),
        )


def make_identity(
    ca, key_type: str = "ec", common_name: str | None = None, key: Any = None
) -> Identity:
    """
    A fresh device identity issued by ``ca`` (a DevelopmentCA).

    ``key``: reuse this private key (certificates still differ); fleets of
    RSA devices are made quickly this way, RSA key generation being slow.
    """
    common_name = common_name or "nanomdm-sim " + uuid.uuid4().hex[:12]
    if key is None:
        cert, key = ca.issue_device_identity(common_name, key_type=key_type)
    else:
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        cert = ca.issue(subject, key.public_key(), [ExtendedKeyUsageOID.CLIENT_AUTH])
    return Identity(cert, key)


def _random_udid() -> str:
    return str(uuid.uuid4()).upper()


def new_enrollment(
    enroll_type: str,
    *,
    udid: str | None = None,
    user_id: str | None = None,
    user_short_name: str | None = None,
    enrollment_id: str | None = None,
    enrollment_user_id: str | None = None,
) -> Enrollment:
    """The identifying fields of an ``enroll_type`` channel; random where not given."""
    kind = ENROLL_TYPES[enroll_type]
    if kind is EnrollType.DEVICE:
        return Enrollment(udid=udid or _random_udid())
    if kind is EnrollType.USER:
        return Enrollment(
            udid=udid or _random_udid(),
            user_id=user_id or _random_udid(),
            user_short_name=user_short_name or "sim-" + secrets.token_hex(3),
            user_long_name="Simulated User",
        )
    if kind is EnrollType.SHARED_IPAD:
        return Enrollment(
            udid=udid or _random_udid(),
            user_id=SHARED_IPAD_USER_ID,
            user_short_name=user_short_name or "sim-" + secrets.token_hex(3),
        )
    if kind is EnrollType.USER_ENROLLMENT_DEVICE:
        return Enrollment(enrollment_id=enrollment_id or _random_udid())
    return Enrollment(
        enrollment_id=enrollment_id or _random_udid(),
        enrollment_user_id=enrollment_user_id or _random_udid(),
    )


@dataclass(frozen=True)
class Response:
    """What the server answered: status, raw body and headers."""

    code: int
    body: bytes
    headers: Headers

    @property
    def plist(self) -> dict[str, Any] | None:
        """The plist in the body (the next command, for a report), None when empty."""
        if self.code != 200:
            raise SimulatorError(
                f"HTTP {self.code}: {self.body[:200].decode('utf-8', 'replace')}"
            )
        return plistlib.loads(self.body) if self.body else None


@dataclass(frozen=True)
class Prepared:
    """A signed request that can be sent, and resent, as is (the benchmark resends)."""

    url: str
    body: bytes
    headers: dict[str, list[str]]


@dataclass
class SimulatedDevice:
    """
    One MDM channel of a simulated device.

    ``auth`` is ``"signature"`` (an ``Mdm-Signature`` header, as devices do),
    ``"header:<Name>"`` (the URL-escaped PEM certificate in that header, as a
    TLS-terminating proxy such as nginx sends it) or ``"none"``.  ``http`` is
    a ``treq.HTTPClient``; without one, treq's shared persistent pool is used.
    """

    url: str
    identity: Identity
    enrollment: Enrollment
    topic: str = DEFAULT_TOPIC
    auth: str = "signature"
    checkin_path: str = "/mdm"
    http: Any = None
    push_token: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    push_magic: str = field(default_factory=lambda: str(uuid.uuid4()).upper())
    serial_number: str = field(
        default_factory=lambda: "SIM" + secrets.token_hex(5).upper()
    )

    def __post_init__(self) -> None:
        enroll_id = self.enrollment.resolve()
        if enroll_id is None:
            raise ValueError("the enrollment fields name no enrollment")
        if not (self.auth in ("signature", "none") or self.auth.startswith("header:")):
            raise ValueError(f"unknown auth mode {self.auth!r}")
        self.enroll_id: EnrollID = enroll_id
        self.url = self.url.rstrip("/")
        if self.http is None:
            self.http = treq

    @classmethod
    def create(
        cls, url: str, identity: Identity, enroll_type: str = "device", **kwargs: Any
    ) -> "SimulatedDevice":
        """A channel of ``enroll_type``; ids as ``new_enrollment`` takes them."""
        ids = {
            name: kwargs.pop(name)
            for name in (
                "udid",
                "user_id",
                "user_short_name",
                "enrollment_id",
                "enrollment_user_id",
            )
            if name in kwargs
        }
        return cls(url, identity, new_enrollment(enroll_type, **ids), **kwargs)

    @property
    def id(self) -> str:
        """The enrollment ID the server knows this channel by."""
        return self.enroll_id.id

    def device_channel(self) -> "SimulatedDevice":
        """The device channel this channel belongs to (itself for a device channel)."""
        if not self.enroll_id.is_user_channel:
            return self
        parent = Enrollment(
            udid=self.enrollment.udid, enrollment_id=self.enrollment.enrollment_id
        )
        return replace(self, enrollment=parent)

    def user_channel(self, enroll_type: str = "user", **ids: str) -> "SimulatedDevice":
        """A user channel on this device, sharing its identity as real Macs do."""
        parent = self.device_channel().enrollment
        enrollment = new_enrollment(
            enroll_type,
            udid=parent.udid or None,
            enrollment_id=parent.enrollment_id or None,
            **ids,
        )
        return replace(self, enrollment=enrollment)

    # Building and sending requests.

    def _enrollment_fields(self) -> dict[str, str]:
        return {
            key: getattr(self.enrollment, name)
            for name, key in _PLIST_KEYS
            if getattr(self.enrollment, name)
        }

    def _auth_headers(self, body: bytes) -> dict[str, list[str]]:
        if self.auth == "signature":
            signature = sign_detached(body, self.identity.cert, self.identity.key)
            return {"Mdm-Signature": [base64.b64encode(signature).decode("ascii")]}
        if self.auth == "none":
            return {}
        name = self.auth.split(":", 1)[1]
        return {name: [urllib.parse.quote(self.identity.cert_pem.decode("ascii"))]}

    def _prepare(
        self, path: str, message: dict[str, Any], content_type: str
    ) -> Prepared:
        body = plistlib.dumps(message)
        headers = {"Content-Type": [content_type], **self._auth_headers(body)}
        return Prepared(self.url + path, body, headers)

    def prepare_checkin(self, message_type: str, **fields: Any) -> Prepared:
        """A check-in message; ``fields`` are plist keys (``Topic=...``)."""
        message = {"MessageType": message_type, **self._enrollment_fields(), **fields}
        return self._prepare(self.checkin_path, message, CHECKIN_CONTENT_TYPE)

    def prepare_report(
        self, status: str, command_uuid: str | None = None, **fields: Any
    ) -> Prepared:
        """A command report; ``fields`` are extra plist keys of the result."""
        message: dict[str, Any] = {
            "Status": status,
            **self._enrollment_fields(),
            **fields,
        }
        if command_uuid is not None:
            message["CommandUUID"] = command_uuid
        return self._prepare("/mdm", message, REPORT_CONTENT_TYPE)

    async def send(self, prepared: Prepared) -> Response:
        """PUT a prepared request, as devices do, and read the whole answer."""
        response = await self.http.request(
            "PUT", prepared.url, data=prepared.body, headers=prepared.headers
        )
        body = await response.content()
        return Response(response.code, body, response.headers)

    # The messages of the protocol.

    async def checkin(self, message_type: str, **fields: Any) -> Response:
        return await self.send(self.prepare_checkin(message_type, **fields))

    async def authenticate(self) -> Response:
        return await self.checkin(
            "Authenticate",
            Topic=self.topic,
            SerialNumber=self.serial_number,
            DeviceName="Simulated device",
            Model="Mac14,2",
            ModelName="MacBook Air",
            ProductName="Mac14,2",
            OSVersion="14.4",
            BuildVersion="23E214",
        )

    def prepare_token_update(
        self,
        token: bytes | None = None,
        push_magic: str | None = None,
        unlock_token: bytes | None = None,
    ) -> Prepared:
        fields: dict[str, Any] = dict(
            Topic=self.topic,
            Token=self.push_token if token is None else token,
            PushMagic=self.push_magic if push_magic is None else push_magic,
        )
        if unlock_token is not None:
            fields["UnlockToken"] = unlock_token
        return self.prepare_checkin("TokenUpdate", **fields)

    async def token_update(
        self,
        token: bytes | None = None,
        push_magic: str | None = None,
        unlock_token: bytes | None = None,
    ) -> Response:
        return await self.send(
            self.prepare_token_update(token, push_magic, unlock_token)
        )

    async def checkout(self) -> Response:
        return await self.checkin("CheckOut")

    async def set_bootstrap_token(self, bootstrap_token: bytes) -> Response:
        return await self.checkin("SetBootstrapToken", BootstrapToken=bootstrap_token)

    async def get_bootstrap_token(self) -> Response:
        """The answer's ``plist`` is ``{"BootstrapToken": b"..."}`` or None."""
        return await self.checkin("GetBootstrapToken")

    async def user_authenticate(self, digest_response: str | None = None) -> Response:
        if digest_response is None:
            return await self.checkin("UserAuthenticate")
        return await self.checkin("UserAuthenticate", DigestResponse=digest_response)

    async def report(
        self, status: str, command_uuid: str | None = None, **fields: Any
    ) -> Response:
        """Report a status; the answer's ``plist`` is the next command or None."""
        return await self.send(self.prepare_report(status, command_uuid, **fields))

    async def idle(self) -> Response:
        return await self.report("Idle")

    async def enroll(self) -> None:
        """Enroll as devices do: Authenticate (device channels), then TokenUpdate."""
        if not self.enroll_id.is_user_channel:
            _expect_ok(await self.authenticate(), "Authenticate")
        _expect_ok(await self.token_update(), "TokenUpdate")

    async def run_queue(
        self, echo: Callable[[str], None] | None = None
    ) -> list[dict[str, Any]]:
        """Idle, then acknowledge every command received until the queue is empty."""
        commands = []
        command = (await self.idle()).plist
        while command is not None:
            commands.append(command)
            if echo is not None:
                echo(
                    "{} {} {}".format(
                        self.id,
                        command["Command"]["RequestType"],
                        command["CommandUUID"],
                    )
                )
            command = (await self.report("Acknowledged", command["CommandUUID"])).plist
        return commands


def _expect_ok(response: Response, what: str) -> None:
    if response.code != 200:
        raise SimulatorError(
            f"{what}: HTTP {response.code}: "
            + response.body[:200].decode("utf-8", "replace")
        )


async def enqueue(
    http: Any,
    url: str,
    api_key: str,
    enrollment_ids: list[str],
    command: bytes,
    no_push: bool = True,
) -> Answer:
    """Enqueue ``command`` for ``enrollment_ids`` in one request; no push by default."""
    return await enqueue_path_form(http, url, api_key, enrollment_ids, command, no_push)


# The command line.

_STATE_FILE = "enrollment.json"


def _save_state(folder: Path, device: SimulatedDevice) -> None:
    device.identity.save(folder)
    state = {name: getattr(device.enrollment, name) for name, _ in _PLIST_KEYS}
    state.update(topic=device.topic, auth=device.auth, checkin_path=device.checkin_path)
    (folder / _STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")


def _load_state(folder: Path, url: str, http: Any) -> SimulatedDevice | None:
    path = folder / _STATE_FILE
    if not path.exists():
        return None
    state = json.loads(path.read_text())
    enrollment = Enrollment(**{name: state[name] for name, _ in _PLIST_KEYS})
    return SimulatedDevice(
        url,
        Identity.load(folder),
        enrollment,
        topic=state["topic"],
        auth=state["auth"],
        checkin_path=state["checkin_path"],
        http=http,
    )


def _channels(device: SimulatedDevice) -> list[SimulatedDevice]:
    """The device channel first, then the user channel when there is one."""
    parent = device.device_channel()
    return [parent] if parent is device else [parent, device]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nanomdm-sim",
        description="A simulated Apple device for a nanomdm server.",
    )
    parser.add_argument(
        "--url", default="http://127.0.0.1:9000", help="server base URL"
    )
    parser.add_argument(
        "--ca-dir",
        default="db/devca",
        type=Path,
        help="folder with the ca.pem and ca.key that issue identities (enroll)",
    )
    parser.add_argument(
        "--state",
        default="sim-state",
        type=Path,
        help="folder that keeps this simulated device's identity and IDs",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    enroll = commands.add_parser(
        "enroll", help="create the device (once) and send Authenticate + TokenUpdate"
    )
    enroll.add_argument("--type", default="device", choices=sorted(ENROLL_TYPES))
    enroll.add_argument(
        "--auth",
        default="signature",
        help='"signature" (Mdm-Signature header) or "header:NAME" (for a server '
        "run with --cert-header NAME)",
    )
    enroll.add_argument(
        "--checkin-path",
        default="/mdm",
        help="/checkin when the server runs with --checkin",
    )
    enroll.add_argument("--topic", default=DEFAULT_TOPIC)
    enroll.add_argument("--key-type", default="ec", choices=("ec", "rsa"))
    commands.add_parser("run", help="send Idle and acknowledge every queued command")
    commands.add_parser("checkout", help="send CheckOut")
    commands.add_parser("id", help="print the enrollment ID")
    return parser


async def _enroll(args: argparse.Namespace, http: Any) -> None:
    device = _load_state(args.state, args.url, http)
    if device is None:
        from ..crypto.devca import DevelopmentCA

        device = SimulatedDevice.create(
            args.url,
            make_identity(DevelopmentCA.load(args.ca_dir), args.key_type),
            args.type,
            topic=args.topic,
            auth=args.auth,
            checkin_path=args.checkin_path,
            http=http,
        )
        _save_state(args.state, device)
    for channel in _channels(device):
        await channel.enroll()
        print(f"enrolled {channel.enroll_id.type}: {channel.id}")


async def _run(args: argparse.Namespace, http: Any) -> None:
    device = _require_state(args, http)
    for channel in _channels(device):
        commands = await channel.run_queue(echo=print)
        print(f"{channel.id}: {len(commands)} command(s) acknowledged, queue empty")


async def _checkout(args: argparse.Namespace, http: Any) -> None:
    device = _require_state(args, http)
    for channel in reversed(_channels(device)):
        _expect_ok(await channel.checkout(), "CheckOut")
        print(f"checked out {channel.id}")


def _require_state(args: argparse.Namespace, http: Any) -> SimulatedDevice:
    device = _load_state(args.state, args.url, http)
    if device is None:
        raise SimulatorError(
            f"no simulated device in {args.state}/: run 'enroll' first"
        )
    return device


async def _id(args: argparse.Namespace, http: Any) -> None:
    print(_require_state(args, http).id)


_COMMANDS = {"enroll": _enroll, "run": _run, "checkout": _checkout, "id": _id}


async def _main(reactor: Any, args: argparse.Namespace) -> None:
    pool = HTTPConnectionPool(reactor, persistent=True)
    http = HTTPClient(Agent(reactor, pool=pool))
    try:
        await _COMMANDS[args.command](args, http)
    except (SimulatorError, ConnectError, OSError) as e:
        print(f"nanomdm-sim: {e}", file=sys.stderr)
        raise SystemExit(1)
    finally:
        await pool.closeCachedConnections()


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    task.react(lambda reactor: Deferred.fromCoroutine(_main(reactor, args)))


if __name__ == "__main__":
    main()
