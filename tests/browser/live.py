"""
A live nanomdm-tw in its own process for the browser tests, and its API over urllib.

The browser tests are synchronous (selenium blocks), so nothing here needs the
test's reactor: the server and a fake APNs run as subprocesses on loopback
ports, and the tests talk to the API with plain urllib, as a script would.
"""

import base64
import datetime
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from nanomdm_tw.crypto.devca import UID_OID, DevelopmentCA, cert_pem, generate_key, key_pem

from ..serving import free_port, wait_until_serving

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "browser-test-key"


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: status, headers (lower-case names) and body."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


def http(method: str, url: str, body: bytes | None = None, headers=None) -> Answer:
    """One request; an error status is an answer too, not an exception."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=30) as response:
            return Answer(response.status, _lower(response.headers), response.read())
    except urllib.error.HTTPError as error:
        return Answer(error.code, _lower(error.headers), error.read())


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def _lower(headers) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


@dataclass
class LiveServer:
    """
    ``nanomdm-tw`` on SQLite in ``folder`` trusting ``ca``; ``flags`` are added to its
    command line.  ``dev`` (-dev) also makes an API key when -api gives none.
    """

    folder: Path
    ca: DevelopmentCA
    flags: list[str] = field(default_factory=list)
    dev: bool = True
    apns_url: str = ""
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.folder / "server.log"

    def start(self) -> None:
        self.ca.save(self.folder / "db" / "devca")
        (self.folder / "ca.pem").write_bytes(self.ca.cert_pem)
        apns = ["-apns-url", self.apns_url, "-apns-ca", str(self.folder / "ca.pem")]
        trust = ["-dev"] if self.dev else ["-ca", str(self.folder / "ca.pem")]
        argv = [
            sys.executable, "-m", "nanomdm_tw.cli", *trust,
            "-listen", f"127.0.0.1:{self.port}", "-storage-dsn", str(self.folder / "db"),
            *(apns if self.apns_url else []), *self.flags,
        ]  # fmt: skip
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.folder,
                env=dict(os.environ, PYTHONPATH=str(ROOT)),
            )  # fmt: skip
        try:
            wait_until_serving(self.port, self.process)
        except AssertionError as error:
            self.stop()
            raise AssertionError(f"{error}\n{self.log.read_text()}") from None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)

    # The API, with the key.

    def api(self, method: str, path: str, body: bytes | None = None, **headers) -> Answer:
        token = base64.b64encode(f"nanomdm:{API_KEY}".encode()).decode()
        return http(method, self.url + path, body, {"Authorization": f"Basic {token}", **headers})

    def enqueue(self, enrollment_id: str, command: bytes) -> Answer:
        """NanoMDM's form, without a push (the tests make the device poll)."""
        path = "/v1/enqueue/" + urllib.parse.quote(enrollment_id, safe=":") + "?nopush=1"
        answer = self.api("PUT", path, command)
        assert answer.status == 200, answer
        return answer

    def queue(self, enrollment_id: str) -> list[dict]:
        answer = self.api("GET", "/v1/queue/" + urllib.parse.quote(enrollment_id, safe=":"))
        assert answer.status == 200, answer
        return answer.json()["commands"]

    def upload_push_cert(self, topic: str, days: int | None = None) -> None:
        """A push cert for ``topic`` from the dev CA, valid ``days`` more days (default: long)."""
        answer = self.api("PUT", "/v1/pushcert", push_cert_pem(self.ca, topic, days))
        assert answer.status == 200, answer


def push_cert_pem(ca: DevelopmentCA, topic: str, days: int | None = None) -> bytes:
    """Cert and key PEM shaped like Apple's push certificate for ``topic``."""
    if days is None:
        cert, key = ca.issue_push_certificate(topic)
    else:
        key = generate_key("rsa")
        subject = x509.Name([x509.NameAttribute(UID_OID, topic),
                             x509.NameAttribute(NameOID.COMMON_NAME, "APSP:" + topic[-36:])])
        not_after = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(
            days=days, hours=12
        )
        cert = ca.issue(subject, key.public_key(), [ExtendedKeyUsageOID.CLIENT_AUTH],
                        not_after=not_after)  # fmt: skip
    return cert_pem(cert) + key_pem(key)


@dataclass
class FakeAPNsProcess:
    """The fake APNs (``python -m nanomdm_tw.tools.fake_apns``) trusting ``ca``'s push certs."""

    folder: Path
    ca: DevelopmentCA
    port: int = field(default_factory=free_port)
    control_port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> None:
        folder = self.folder / "apns-ca"
        self.ca.save(folder)
        with open(self.folder / "fake-apns.log", "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "nanomdm_tw.tools.fake_apns", "--ca", str(folder),
                 "--port", str(self.port), "--control-port", str(self.control_port)],
                stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
            )  # fmt: skip
        _wait_for_control(self.control_port, self.process)

    def pushes_received(self) -> int:
        """Pushes received since the previous call (the fake counts from its control port)."""
        answer = http("GET", f"http://127.0.0.1:{self.control_port}/")
        return int(answer.json()["received"])

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


def _wait_for_control(port: int, process: subprocess.Popen) -> None:
    """The fake listens on its TLS port before its control port: the control port answering."""
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5):
                return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("the fake APNs did not start") from None
            time.sleep(0.2)
