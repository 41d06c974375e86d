"""
Enrollment identities and how a message resolves to one enrollment ID.

NanoMDM collapses the identifiers of every MDM channel into one string;
storage, queues and pushes are keyed by it.  See PROTOCOL.md's table.
"""

import enum
from dataclasses import dataclass

SHARED_IPAD_USER_ID = "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF"

# Joins a device channel's ID and a user's into the user channel's ID.
ID_SEPARATOR = ":"


class EnrollType(enum.IntEnum):
    """Enrollment types, numbered and named as NanoMDM numbers and names them."""

    DEVICE = 1
    USER = 2
    USER_ENROLLMENT_DEVICE = 3
    USER_ENROLLMENT = 4
    SHARED_IPAD = 5

    def __str__(self) -> str:
        return _TYPE_NAMES[self]


_TYPE_NAMES = {
    EnrollType.DEVICE: "Device",
    EnrollType.USER: "User",
    EnrollType.USER_ENROLLMENT_DEVICE: "User Enrollment (Device)",
    EnrollType.USER_ENROLLMENT: "User Enrollment",
    EnrollType.SHARED_IPAD: "Shared iPad",
}


@dataclass(frozen=True, slots=True)
class EnrollID:
    """The resolved identity of one enrollment (one MDM channel)."""

    type: EnrollType
    id: str
    parent_id: str | None = None

    @property
    def device_channel_id(self) -> str:
        """The ID of the device channel this enrollment belongs to."""
        return self.parent_id or self.id

    @property
    def is_user_channel(self) -> bool:
        return self.parent_id is not None


@dataclass(frozen=True, slots=True)
class Enrollment:
    """The identifying fields every check-in and report carries."""

    udid: str = ""
    user_id: str = ""
    user_short_name: str = ""
    user_long_name: str = ""
    enrollment_id: str = ""
    enrollment_user_id: str = ""

    def id_parts_with_separator(self) -> list[str]:
        """
        The identifiers that would go into an enrollment ID but contain ``:``.

        IDs join their parts with ``:``, so a device whose UDID is ``A:B`` and
        user ``B`` on device ``A`` would share an ID, queue and push token.
        """
        parts = [self.udid, self.user_id, self.enrollment_id, self.enrollment_user_id]
        if self.user_id == SHARED_IPAD_USER_ID:
            parts.append(self.user_short_name)
        return [part for part in parts if ID_SEPARATOR in part]

    def resolve(self) -> EnrollID | None:
        """The enrollment ID of this channel, or None when the fields name none."""
        if self.udid:
            if not self.user_id:
                return EnrollID(EnrollType.DEVICE, self.udid)
            if self.user_id == SHARED_IPAD_USER_ID:
                if not self.user_short_name:
                    return None
                return EnrollID(
                    EnrollType.SHARED_IPAD,
                    self.udid + ID_SEPARATOR + self.user_short_name,
                    self.udid,
                )
            return EnrollID(EnrollType.USER, self.udid + ID_SEPARATOR + self.user_id, self.udid)
        if self.enrollment_id:
            if not self.enrollment_user_id:
                return EnrollID(EnrollType.USER_ENROLLMENT_DEVICE, self.enrollment_id)
            return EnrollID(
                EnrollType.USER_ENROLLMENT,
                self.enrollment_id + ID_SEPARATOR + self.enrollment_user_id,
                self.enrollment_id,
            )
        return None
