"""
The enrollment profile (``.mobileconfig``) that points a device at this server.

Shaped as NanoMDM's docs/enroll.mobileconfig: a SCEP payload that gets the
device its identity certificate, and the MDM payload that uses it.  The
SCEP server is not ours, so its URL and challenge are placeholders the
administrator replaces; the MDM payload is filled with this server's URLs
and the push certificate's topic.  Unsigned: sign it (or deliver it over
a trusted channel) before handing it to devices.
"""

import plistlib
import uuid

SCEP_CHALLENGE_PLACEHOLDER = "SCEP-CHALLENGE-HERE"
# Every right an MDM server may ask for (Apple's AccessRights bits, 1 to 4096).
ALL_ACCESS_RIGHTS = 8191
IDENTIFIER = "nanomdm-tw.enrollment"


def _payload_uuid() -> str:
    return str(uuid.uuid4()).upper()


def enrollment_profile(base_url: str, topic: str, checkin: bool) -> bytes:
    """
    The profile's XML plist, with fresh PayloadUUIDs.  ``base_url``: the
    server as devices reach it (``https://mdm.example.org``, no trailing
    slash); ``checkin``: the server takes check-ins on ``/checkin`` apart.
    """
    scep_uuid = _payload_uuid()
    scep = {
        "PayloadContent": {
            "Key Type": "RSA",
            "Challenge": SCEP_CHALLENGE_PLACEHOLDER,
            "Key Usage": 5,
            "Keysize": 2048,
            "URL": base_url + "/scep",
        },
        "PayloadIdentifier": IDENTIFIER + ".scep",
        "PayloadType": "com.apple.security.scep",
        "PayloadUUID": scep_uuid,
        "PayloadVersion": 1,
    }
    mdm = {
        "AccessRights": ALL_ACCESS_RIGHTS,
        "CheckOutWhenRemoved": True,
        "IdentityCertificateUUID": scep_uuid,
        "PayloadIdentifier": IDENTIFIER + ".mdm",
        "PayloadType": "com.apple.mdm",
        "PayloadUUID": _payload_uuid(),
        "PayloadVersion": 1,
        "ServerCapabilities": ["com.apple.mdm.per-user-connections"],
        "ServerURL": base_url + "/mdm",
        "SignMessage": True,
        "Topic": topic,
    }
    if checkin:
        mdm["CheckInURL"] = base_url + "/checkin"
    profile = {
        "PayloadContent": [scep, mdm],
        "PayloadDisplayName": "Enrollment Profile",
        "PayloadIdentifier": IDENTIFIER,
        "PayloadScope": "System",
        "PayloadType": "Configuration",
        "PayloadUUID": _payload_uuid(),
        "PayloadVersion": 1,
    }
    return plistlib.dumps(profile, sort_keys=False)
