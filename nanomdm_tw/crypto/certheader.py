"""
The device certificate as a TLS-terminating proxy forwards it (``-cert-header``).

Two forms, told apart by the first character, as NanoMDM tells them:
RFC 9440 ``Client-Cert`` (``:base64-DER:``), and the URL-escaped PEM that
nginx puts in ``$ssl_client_escaped_cert``.
"""

import base64
import binascii
from urllib.parse import unquote

from cryptography import x509

from ..errors import MessageError

# A certificate chain of a few KiB fits many times over; more is not a certificate.
MAX_CERT_HEADER = 64 * 1024


def certificate_from_header(value: bytes | str) -> x509.Certificate:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    value = value.strip()
    if not value:
        raise MessageError("empty certificate header")
    if len(value) > MAX_CERT_HEADER:
        raise MessageError("certificate header too large")
    if value.startswith(":"):
        return _from_rfc9440(value)
    return _from_escaped_pem(value)


def _from_rfc9440(value: str) -> x509.Certificate:
    if len(value) < 2 or not value.endswith(":"):
        raise MessageError("RFC 9440 certificate header must be :base64:")
    try:
        der = base64.b64decode(value[1:-1], validate=True)
    except binascii.Error:
        raise MessageError("RFC 9440 certificate header is not base64")
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError:
        raise MessageError("RFC 9440 certificate header is not a DER certificate")


def _from_escaped_pem(value: str) -> x509.Certificate:
    # unquote, not unquote_plus: base64 has '+' and nginx escapes spaces as %20.
    pem = unquote(value).encode("ascii", "replace")
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise MessageError("certificate header is not a URL-escaped PEM certificate")
