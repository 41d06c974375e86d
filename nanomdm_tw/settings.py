"""
Every server setting, named as NanoMDM's flags are.

tap.py and cli.py fill them from flags and NANOMDM_* variables; a .tac file
or a test builds them directly.  Whoever builds them, ``check()`` is the one
place that refuses settings that contradict each other or would serve
devices unauthenticated; the server calls it before it starts.
"""

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .resources.body import DEFAULT_MAX_BODY_SIZE
from .services.webhook import MAX_QUEUED_BYTES

APPLE_ESCROW_KEY_UNLOCK_URL = (
    "https://deviceservices-external.apple.com/deviceservicesworkers/escrowKeyUnlock"
)
DEFAULT_HTTP_TIMEOUT = 30.0
DEFAULT_WEBHOOK_TIMEOUT = 10.0
DEFAULT_APNS_TIMEOUT = 10.0
DEFAULT_STORAGE_TIMEOUT = 30.0
DEFAULT_STORAGE_MAX_WAITING = 1000
# The flags that are durations, by Settings field.
TIMEOUT_FLAGS = {
    "http_timeout": "http-timeout",
    "webhook_timeout": "webhook-timeout",
    "apns_timeout": "apns-timeout",
    "storage_timeout": "storage-timeout",
}
# An endpoint on a port the system picks, which cannot clash with another.
ANY_PORT = re.compile(r"tcp6?:0(:|$)")


class SettingsError(ValueError):
    """Settings that must not start a server; the message says which and why."""


@dataclass(frozen=True)
class StorageSpec:
    name: str = "sqlite"
    dsn: str = "db"
    options: str = ""


@dataclass
class Settings:
    """Every server setting, named as NanoMDM's flags are."""

    listen: str = "tcp:9000"
    # /metrics, /healthz and /readyz on a listener of their own (an endpoint
    # string); empty: on the main listener.
    metrics_listen: str = ""
    api_key: str = ""
    ca: str = ""
    intermediate: str = ""
    cert_header: str = ""
    checkin: bool = False
    debug: bool = False
    dump: bool = False
    disable_mdm: bool = False
    migration: bool = False
    retro: bool = False
    ua_zl_dc: bool = False
    dev: bool = False
    # The admin console at /admin/ (served only with an API key).
    admin: bool = True
    storage: StorageSpec = field(default_factory=StorageSpec)
    # More --storage backends: written to after `storage`, which answers (multi).
    extra_storages: tuple[StorageSpec, ...] = ()
    max_body_size: int = DEFAULT_MAX_BODY_SIZE
    data_dir_override: str = ""
    apns_url: str = "https://api.push.apple.com"
    apns_ca: str = ""
    push_expiration: float | None = None
    escrow_key_unlock_url: str = APPLE_ESCROW_KEY_UNLOCK_URL
    webhook_url: str = ""
    webhook_hmac_key: str = ""
    webhook_queue_bytes: int = MAX_QUEUED_BYTES
    dm: str = ""
    dm_send_hmac_key: str = ""
    dm_recv_hmac_key: str = ""
    auth_proxy_url: str = ""
    workers: int = 1  # server processes: tap.py turns auto and the default into a number
    # Timeouts, in seconds: outbound HTTP (escrow key unlock, auth proxy, DM),
    # the webhook POST, one push from call to answer (APNs connect included),
    # and the database (statement, lock wait, and the wait for a connection).
    http_timeout: float = DEFAULT_HTTP_TIMEOUT
    webhook_timeout: float = DEFAULT_WEBHOOK_TIMEOUT
    apns_timeout: float = DEFAULT_APNS_TIMEOUT
    storage_timeout: float = DEFAULT_STORAGE_TIMEOUT
    # Database interactions that may wait for a pooled connection, per process
    # and backend; more are answered 503 at once.
    storage_max_waiting: int = DEFAULT_STORAGE_MAX_WAITING
    # Seconds that requests under way get to finish after SIGTERM (and webhook
    # deliveries and mirror writes, after them).
    shutdown_grace: float = 10.0

    def check(self) -> None:
        """Raise SettingsError for settings that contradict each other or fail open."""
        if self.disable_mdm and not self.api_key:
            raise SettingsError("--disable-mdm needs --api: nothing would be served")
        if not self.disable_mdm and not self.ca and not self.dev:
            # Without a CA any self-signed certificate would pass as a device.
            raise SettingsError(
                "--ca is required to authenticate devices (or --dev for a development CA)"
            )
        if self.migration and not self.api_key:
            raise SettingsError("--migration needs --api: the endpoint is API-authenticated")
        for flag, path in (("ca", self.ca), ("intermediate", self.intermediate),
                           ("apns-ca", self.apns_ca)):  # fmt: skip
            if path and not os.path.isfile(path):
                raise SettingsError(f"--{flag}: no such file {path!r}")
        if self.metrics_listen == self.listen and not ANY_PORT.match(self.listen):
            raise SettingsError(
                "--metrics-listen must differ from --listen (leave it unset to serve"
                " metrics on the main listener)"
            )
        if self.workers < 1:
            raise SettingsError("--workers must be a positive whole number or auto")
        if self.shutdown_grace < 0:
            raise SettingsError("--shutdown-grace must not be negative")
        if self.max_body_size < 1:
            raise SettingsError("--max-body-size must be a positive whole number")
        for name, flag in TIMEOUT_FLAGS.items():
            if not getattr(self, name) > 0:
                raise SettingsError(f"--{flag} must be a duration longer than zero, e.g. 30s")
        if self.storage_max_waiting < 1:
            raise SettingsError("--storage-max-waiting must be a positive whole number")
        if self.webhook_queue_bytes < 1:
            raise SettingsError("--webhook-queue-bytes must be a positive whole number")
        storages = (self.storage, *self.extra_storages)
        if self.workers > 1 and any(spec.name == "inmem" for spec in storages):
            raise SettingsError("--workers: processes cannot share inmem storage")

    def apns_ca_pem(self) -> bytes | None:
        """The extra CA that Apple-facing TLS trusts (tests' fakes), if any."""
        return Path(self.apns_ca).read_bytes() if self.apns_ca else None

    @property
    def data_dir(self) -> Path:
        """Where --dev keeps its CA and API key: the storage folder, else ./db."""
        if self.data_dir_override:
            return Path(self.data_dir_override)
        if self.storage.name in ("sqlite", "file", "filekv") and self.storage.dsn:
            path = Path(self.storage.dsn)
            return path.parent if path.suffix else path
        return Path("db")
