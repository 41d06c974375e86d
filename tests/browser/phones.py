"""
Simulated devices for the browser tests: the simulator's signed check-ins and
reports, sent with urllib so that a synchronous test can drive them between
two browser steps.
"""

import plistlib
from dataclasses import dataclass, replace
from typing import Any

from nanomdm_tw.crypto.devca import DevelopmentCA
from nanomdm_tw.tools.sim import DEFAULT_TOPIC, Prepared, SimulatedDevice, make_identity

from .live import http

# What a hostile device reports where the console shows device data.
HOSTILE_NAME = "<img src=x onerror=alert(1)>"
HOSTILE_SCRIPT = "<script>window.__pwned=1</script>"


@dataclass
class Phone:
    """One MDM channel of a simulated device."""

    channel: SimulatedDevice

    @classmethod
    def create(cls, url: str, ca: DevelopmentCA, serial_number: str | None = None) -> "Phone":
        extra = {} if serial_number is None else {"serial_number": serial_number}
        return cls(SimulatedDevice.create(url, make_identity(ca), **extra))

    @property
    def id(self) -> str:
        return self.channel.id

    @property
    def serial_number(self) -> str:
        return self.channel.serial_number

    def send(self, prepared: Prepared) -> dict[str, Any] | None:
        """PUT it as a device does; the plist answered (the next command), None when empty."""
        headers = {name: values[0] for name, values in prepared.headers.items()}
        answer = http("PUT", prepared.url, prepared.body, headers)
        assert answer.status == 200, answer
        return plistlib.loads(answer.body) if answer.body else None

    def enroll(self, device_name: str = "Simulated device") -> "Phone":
        """Authenticate (naming itself ``device_name``), then TokenUpdate."""
        self.send(
            self.channel.prepare_checkin(
                "Authenticate", Topic=DEFAULT_TOPIC, SerialNumber=self.serial_number,
                DeviceName=device_name, Model="Mac14,2", OSVersion="14.4",
            )
        )  # fmt: skip
        self.send(self.channel.prepare_token_update())
        return self

    def enroll_user(self, short_name: str, long_name: str) -> "Phone":
        """A user channel on this device, enrolled with TokenUpdate."""
        channel = self.channel.user_channel(user_short_name=short_name)
        enrollment = replace(channel.enrollment, user_long_name=long_name)
        user = Phone(replace(channel, enrollment=enrollment))
        user.send(user.channel.prepare_token_update())
        return user

    def idle(self) -> dict[str, Any] | None:
        """Poll: the next queued command, None when the queue is empty."""
        return self.send(self.channel.prepare_report("Idle"))

    def answer(
        self, command: dict[str, Any], status: str = "Acknowledged", **fields: Any
    ) -> dict[str, Any] | None:
        """Report ``status`` for ``command``, with ``fields`` as result keys; the next command."""
        return self.send(self.channel.prepare_report(status, command["CommandUUID"], **fields))


def hostile_error_chain() -> list[dict[str, Any]]:
    return [
        {"ErrorCode": 12021, "ErrorDomain": "MCMDMErrorDomain",
         "LocalizedDescription": HOSTILE_SCRIPT, "USEnglishDescription": HOSTILE_SCRIPT},
    ]  # fmt: skip
