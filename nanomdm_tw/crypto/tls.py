"""
TLS client options for talking to Apple with the push certificate.

APNs and the escrow-key-unlock service both authenticate us by the topic's
push certificate as a TLS client certificate.  Tests point them at local
fakes whose CA is passed as ``extra_ca_pem``; otherwise the platform's
trust store is used.
"""

from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.ssl import (
    Certificate,
    PrivateCertificate,
    optionsForClientTLS,
    platformTrust,
    trustRootFromCertificates,
)
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer


def client_tls_options(
    hostname: str,
    cert_pem: bytes,
    key_pem: bytes,
    extra_ca_pem: bytes | None = None,
    acceptable_protocols: list[bytes] | None = None,
) -> IOpenSSLClientConnectionCreator:
    """TLS to ``hostname`` presenting the push certificate."""
    trust_root = (
        trustRootFromCertificates([Certificate.loadPEM(extra_ca_pem)])
        if extra_ca_pem
        else platformTrust()
    )
    return optionsForClientTLS(
        hostname,
        trustRoot=trust_root,
        clientCertificate=PrivateCertificate.loadPEM(cert_pem + b"\n" + key_pem),
        acceptableProtocols=acceptable_protocols,
    )


@implementer(IPolicyForHTTPS)
class ClientCertificatePolicy:
    """An Agent policy that presents the push certificate to every host."""

    def __init__(self, cert_pem: bytes, key_pem: bytes, extra_ca_pem: bytes | None = None):
        self._cert_pem = cert_pem
        self._key_pem = key_pem
        self._extra_ca_pem = extra_ca_pem

    def creatorForNetloc(self, hostname: bytes, port: int) -> IOpenSSLClientConnectionCreator:
        return client_tls_options(
            hostname.decode("ascii"), self._cert_pem, self._key_pem, self._extra_ca_pem
        )
