"""
What a device signed: the request body, or a big body with its digests made in a thread.

Checking an Mdm-Signature hashes the whole body: 10 ms for a 20 MB report,
on the reactor thread.  For a big body the endpoint computes the digests
devices use in an Offload thread first (hashlib lets go of the GIL while
it hashes), and the signature readers take them from here.
"""

import hashlib

# What devices sign with: Apple devices SHA-256, older ones SHA-1.
DEVICE_HASHES = ("sha256", "sha1")


class DigestedBody:
    """A request body and its digests; one not computed ahead is computed when asked for."""

    __slots__ = ("body", "_digests")

    def __init__(self, body: bytes):
        self.body = body
        self._digests = {name: hashlib.new(name, body).digest() for name in DEVICE_HASHES}

    def digest(self, hash_name: str) -> bytes:
        value = self._digests.get(hash_name)
        if value is None:
            value = hashlib.new(hash_name, self.body).digest()
        return value


Content = bytes | DigestedBody


def content_digest(content: Content, hash_name: str) -> bytes:
    if type(content) is bytes:
        return hashlib.new(hash_name, content).digest()
    return content.digest(hash_name)


def content_bytes(content: Content) -> bytes:
    """The body itself: what a signature without signed attributes covers."""
    return content if type(content) is bytes else content.body
