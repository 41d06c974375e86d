"""The per-request context that travels through the service chain into storage."""

import secrets
from dataclasses import dataclass, field

from cryptography import x509

from .enrollment import EnrollID


def new_trace_id() -> str:
    """A random 16-hex-character ID that ties together every log line of a request."""
    return secrets.token_hex(8)


@dataclass(slots=True)
class MDMRequest:
    """
    One device request as the services see it.

    ``enroll_id`` is resolved from the message before any service runs;
    ``certificate`` is the device identity, when the transport gave one.
    """

    enroll_id: EnrollID
    certificate: x509.Certificate | None = None
    trace_id: str = field(default_factory=new_trace_id)
    params: dict[str, str] = field(default_factory=dict)
