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

APPLE_ESCROW_KEY_UNLOCK_URL = (
    "https://deviceservices-external.apple.com/deviceservicesworkers/escrowKeyUnlock"
)
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
    dm: str = ""
    dm_send_hmac_key: str = ""
    dm_recv_hmac_key: str = ""
    auth_proxy_url: str = ""
    workers: int = 1  # server processes: tap.py turns auto and the default into a number
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
