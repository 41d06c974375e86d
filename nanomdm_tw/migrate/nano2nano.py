"""
NanoMDM's nano2nano: each enrollment's Authenticate and TokenUpdate, sent to a ``/migration``.

The receiving server (NanoMDM, or ours with ``--migration``) takes them as
check-ins without a device certificate, which is enough for it to push to
the devices and queue commands for them; devices then need its ``-retro``
to associate their certificates.  Order matters: a device's Authenticate,
its TokenUpdate, then its user channels' TokenUpdates.  Enrollments that
checked out (disabled) are left out, as NanoMDM's kv store leaves them out.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from treq.client import HTTPClient

from .records import Source


@dataclass(frozen=True, slots=True)
class Checkin:
    enrollment_id: str
    message_type: str
    raw: bytes


def migration_checkins(source: Source) -> Iterator[Checkin]:
    """The check-ins to send, in order (user channels' TokenUpdates are read first)."""
    enabled = {e.id for e in source.read("enrollments") if e.enabled}
    user_channels: dict[str, list[Checkin]] = {}
    for user in source.read("users"):
        if user.id in enabled and user.token_update:
            checkin = Checkin(user.id, "TokenUpdate", user.token_update)
            user_channels.setdefault(user.device_id, []).append(checkin)
    for device in source.read("devices"):
        if device.id not in enabled or not device.token_update:
            continue
        yield Checkin(device.id, "Authenticate", device.authenticate)
        yield Checkin(device.id, "TokenUpdate", device.token_update)
        yield from user_channels.get(device.id, [])


async def send_checkins(
    http: HTTPClient,
    url: str,
    api_key: str,
    checkins: Iterator[Checkin],
    sent: Callable[[Checkin, str | None], None],
) -> None:
    """PUT each check-in to ``url``, one at a time; ``sent(checkin, error or None)`` after each."""
    for checkin in checkins:
        try:
            response = await http.put(url, data=checkin.raw, auth=("nanomdm", api_key))
            body = await response.content()
        except Exception as e:  # connection refused, TLS, DNS: reported per check-in
            sent(checkin, f"{e.__class__.__name__}: {e}")
            continue
        if response.code == 200:
            sent(checkin, None)
        else:
            detail = body[:200].decode("utf-8", "replace").strip()
            sent(checkin, f"HTTP {response.code} {detail}".rstrip())
