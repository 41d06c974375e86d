"""
``twistd nanomdm``: NanoMDM's flags as Twisted options.

Every flag keeps NanoMDM's name (``--api`` for ``-api``) and can also come
from the environment as ``NANOMDM_<NAME>`` (``--storage-dsn`` from
``NANOMDM_STORAGE_DSN``): a flag beats the environment, which beats the
default.  Contradictions stop start-up with one clear line.
"""

import os
import re
import sys

from twisted.application.service import IService, MultiService
from twisted.python import usage

from . import __version__
from .duration import parse_duration
from .resources.body import DEFAULT_MAX_BODY_SIZE
from .services.webhook import MAX_QUEUED_BYTES
from .server import NanoMDMService
from .settings import (
    DEFAULT_APNS_TIMEOUT,
    DEFAULT_HTTP_TIMEOUT,
    DEFAULT_STORAGE_MAX_WAITING,
    DEFAULT_STORAGE_TIMEOUT,
    DEFAULT_WEBHOOK_TIMEOUT,
    TIMEOUT_FLAGS,
    Settings,
    SettingsError,
    StorageSpec,
)
from .storage import STORAGE_NAMES, parse_storage_options
from .storage.imported import DEFAULT_FOLDERS
from .workers import AUTO, default_workers, usable_cpus

# Go's strconv.ParseBool, which NanoMDM's boolean flags and variables go through.
GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def parse_go_bool(text: str) -> bool:
    """A boolean as Go spells it; anything else is an error, never quietly false."""
    if text in GO_TRUE:
        return True
    if text in GO_FALSE:
        return False
    raise ValueError(f"invalid boolean value {text!r}")


def endpoint_from_listen(listen: str, flag: str = "listen") -> str:
    """NanoMDM's ``[host]:port`` form as a Twisted endpoint string; endpoints pass through."""
    match = re.fullmatch(r"(\[(?P<v6>[^\]]*)\]|(?P<host>[^:\[\]]*)):(?P<port>\d+)", listen)
    if match is None:
        if re.match(r"^[a-z0-9]+:", listen):
            return listen
        raise usage.UsageError(f"--{flag}: cannot understand {listen!r}")
    host = match.group("v6") or match.group("host") or ""
    endpoint = "tcp:" + match.group("port")
    if host:
        endpoint += ":interface=" + host.replace(":", r"\:")
    return endpoint


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = "An Apple MDM server, drop-in compatible with NanoMDM."

    optParameters = [
        ["listen", None, None, "HTTP listen address: NanoMDM's [host]:port or a Twisted endpoint string [default: :9000]"],
        ["metrics-listen", None, None, "serve /metrics, /healthz and /readyz here ([host]:port or a Twisted endpoint string) instead of on --listen"],
        ["api", None, None, "API key for API endpoints (HTTP Basic, user nanomdm)"],
        ["ca", None, None, "path to PEM CA cert(s) that issue device identities"],
        ["intermediate", None, None, "path to PEM intermediate cert(s)"],
        ["cert-header", None, None, "HTTP header containing the TLS client certificate (RFC 9440 or URL-escaped PEM)"],
        ["apns-url", None, None, "APNs base URL [default: https://api.push.apple.com]"],
        ["apns-ca", None, None, "path to PEM CA cert(s) to trust for APNs and Apple's services instead of the system's (tests)"],
        ["push-expiration", None, None, "how long APNs keeps an undelivered push, as a duration (e.g. 24h, 90m); sent as apns-expiration"],
        ["webhook-url", None, None, "URL to send MDM events to (NanoMDM-compatible webhook)"],
        ["webhook-hmac-key", None, None, "key to sign webhook bodies with (X-Hmac-Signature, base64 HMAC-SHA256)"],
        ["webhook-queue-bytes", None, None, f"most bytes of webhook events waiting for the receiver, per process; newer events are dropped [default: {MAX_QUEUED_BYTES}]"],
        ["dm", None, None, "URL to send Declarative Management requests to (should end with /)"],
        ["dm-send-hmac-key", None, None, "key to sign Declarative Management request bodies with"],
        ["dm-recv-hmac-key", None, None, "key to verify Declarative Management reply bodies with"],
        ["auth-proxy-url", None, None, "reverse proxy URL target for MDM-authenticated HTTP requests (/authproxy/)"],
        [
            "workers", None, None,
            "server processes sharing the listening socket: a number, or auto for one per CPU"
            " (not with inmem) [default: auto on mysql and pgsql, else 1]",
        ],
        ["max-body-size", None, None, f"largest accepted request body in bytes [default: {DEFAULT_MAX_BODY_SIZE}]"],
        ["http-timeout", None, None, f"how long to wait for Apple's escrow key service, the auth proxy target and the DM server, as a duration [default: {DEFAULT_HTTP_TIMEOUT:g}s]"],
        ["webhook-timeout", None, None, f"how long to wait for the webhook receiver to answer one POST, as a duration [default: {DEFAULT_WEBHOOK_TIMEOUT:g}s]"],
        ["apns-timeout", None, None, f"how long one push may take, connecting to APNs included, as a duration [default: {DEFAULT_APNS_TIMEOUT:g}s]"],
        ["storage-timeout", None, None, f"longest database statement, lock wait or wait for a connection, as a duration; past it, 503 with Retry-After [default: {DEFAULT_STORAGE_TIMEOUT:g}s]"],
        ["storage-max-waiting", None, None, f"requests that may wait for a database connection, per process; more are answered 503 with Retry-After [default: {DEFAULT_STORAGE_MAX_WAITING}]"],
        ["shutdown-grace", None, None, "after SIGTERM, how long requests under way get to finish, as a duration (e.g. 10s, 1m) [default: 10s]"],
    ]
    optFlags = [
        ["checkin", None, "enable separate HTTP endpoint for MDM check-ins"],
        ["debug", None, "log debug messages"],
        ["dump", None, "dump MDM requests and responses to stdout"],
        ["disable-mdm", None, "disable MDM HTTP endpoint"],
        ["migration", None, "HTTP endpoint for enrollment migrations"],
        ["retro", None, "allow retroactive certificate-authorization association"],
        ["ua-zl-dc", None, "reply with zero-length DigestChallenge for UserAuthenticate"],
        ["dev", None, "quick start: without --ca, create a development CA and API key in the data folder"],
        ["admin", None, "serve the admin console at /admin/ (with --api; -admin=false turns it off) [default: true]"],
    ]

    def __init__(self, environ: dict[str, str] | None = None, cpus: int | None = None):
        """``cpus``: what ``--workers auto`` means (default: the CPUs we may use)."""
        super().__init__()
        self.environ = os.environ if environ is None else environ
        self.cpus = usable_cpus() if cpus is None else cpus
        self["storage"], self["storage-dsn"], self["storage-options"] = [], [], []
        self["admin"] = None  # a flag that defaults to true: None until something sets it
        # Boolean flags given on the command line, false included (nanomdm-tw's
        # -debug=false beats NANOMDM_DEBUG=1; twistd's flags can only say true).
        self.explicit: set[str] = set()

    def opt_version(self) -> None:
        """print version and exit"""
        print(__version__)
        sys.exit(0)

    def opt_storage(self, name: str) -> None:
        """name of storage backend (sqlite, mysql, pgsql, inmem; filekv and file serve a store imported with nanomdm-tw-migrate); repeat for multi storage [default: sqlite]"""
        self["storage"].append(name)

    def opt_storage_dsn(self, dsn: str) -> None:
        """storage data source name [default: db]"""
        self["storage-dsn"].append(dsn)

    def opt_dsn(self, dsn: str) -> None:
        """the same as --storage-dsn"""
        self.opt_storage_dsn(dsn)

    def opt_storage_options(self, options: str) -> None:
        """storage backend options, e.g. delete=1"""
        self["storage-options"].append(options)

    def _from_environment(self) -> None:
        """Fill what the command line left unset from NANOMDM_* variables."""
        for name, *_ in self.optParameters:
            if self[name] is None:
                self[name] = self.environ.get(_env_name(name))
        for name, *_ in self.optFlags:
            variable = _env_name(name)
            if name in self.explicit or self[name] or variable not in self.environ:
                continue
            try:
                self[name] = parse_go_bool(self.environ[variable])
            except ValueError as e:
                raise usage.UsageError(f"{variable}: {e}")
        for name in ("storage", "storage-dsn", "storage-options"):
            if not self[name] and _env_name(name) in self.environ:
                self[name] = [self.environ[_env_name(name)]]

    def _storage_specs(self) -> list[StorageSpec]:
        """One spec per --storage; several make NanoMDM's multi storage (the first answers)."""
        names, dsns, options = self["storage"], self["storage-dsn"], self["storage-options"]
        names = names or ["sqlite"]
        if len(dsns) > len(names) or len(names) > 1 and len(dsns) != len(names):
            raise usage.UsageError("must have same number of --storage and --storage-dsn flags")
        if options and len(options) != len(names):
            raise usage.UsageError(
                "must have same number of --storage and --storage-options flags"
            )
        specs = []
        for index, name in enumerate(names):
            if name not in STORAGE_NAMES:
                raise usage.UsageError(
                    f"--storage: unknown backend {name!r} (known: {', '.join(STORAGE_NAMES)})"
                )
            option = options[index] if index < len(options) else ""
            try:
                parse_storage_options(option)
            except ValueError as e:
                raise usage.UsageError(f"--storage-options: {e}")
            default_dsn = {"sqlite": "db", **DEFAULT_FOLDERS}.get(name, "")
            specs.append(
                StorageSpec(
                    name=name,
                    dsn=dsns[index] if index < len(dsns) else default_dsn,
                    options=option,
                )
            )
        return specs

    def postOptions(self) -> None:
        self._from_environment()
        max_body_size = self._positive_number(
            "max-body-size", self["max-body-size"] or DEFAULT_MAX_BODY_SIZE
        )
        try:
            push_expiration = (
                parse_duration(self["push-expiration"]) if self["push-expiration"] else None
            )
        except ValueError as e:
            raise usage.UsageError(f"--push-expiration: {e}")
        try:
            shutdown_grace = parse_duration(self["shutdown-grace"] or "10s")
        except ValueError as e:
            raise usage.UsageError(f"--shutdown-grace: {e}")
        storages = self._storage_specs()
        workers = self._workers(storages)
        limits = {
            name: self._duration(flag) for name, flag in TIMEOUT_FLAGS.items() if self[flag]
        }
        if self["storage-max-waiting"]:
            limits["storage_max_waiting"] = self._positive_number(
                "storage-max-waiting", self["storage-max-waiting"]
            )
        settings = Settings(
            listen=endpoint_from_listen(self["listen"] or ":9000"),
            metrics_listen=(
                endpoint_from_listen(self["metrics-listen"], "metrics-listen")
                if self["metrics-listen"]
                else ""
            ),
            api_key=self["api"] or "",
            ca=self["ca"] or "",
            intermediate=self["intermediate"] or "",
            cert_header=self["cert-header"] or "",
            checkin=self["checkin"],
            debug=self["debug"],
            dump=self["dump"],
            disable_mdm=self["disable-mdm"],
            migration=self["migration"],
            retro=self["retro"],
            ua_zl_dc=self["ua-zl-dc"],
            dev=self["dev"],
            admin=self["admin"] is None or bool(self["admin"]),
            storage=storages[0],
            extra_storages=tuple(storages[1:]),
            max_body_size=max_body_size,
            apns_url=self["apns-url"] or Settings.apns_url,
            webhook_url=self["webhook-url"] or "",
            webhook_hmac_key=self["webhook-hmac-key"] or "",
            webhook_queue_bytes=self._positive_number(
                "webhook-queue-bytes", self["webhook-queue-bytes"] or MAX_QUEUED_BYTES
            ),
            dm=self["dm"] or "",
            dm_send_hmac_key=self["dm-send-hmac-key"] or "",
            dm_recv_hmac_key=self["dm-recv-hmac-key"] or "",
            auth_proxy_url=self["auth-proxy-url"] or "",
            apns_ca=self["apns-ca"] or "",
            push_expiration=push_expiration,
            workers=workers,
            **limits,
            shutdown_grace=shutdown_grace,
        )
        try:
            settings.check()
        except SettingsError as e:
            raise usage.UsageError(str(e))
        self.settings = settings

    def _workers(self, storages: list[StorageSpec]) -> int:
        """A number, or ``auto``: one process per CPU; unset, it depends on the backends."""
        value = self["workers"] or default_workers([spec.name for spec in storages])
        if value.strip().lower() == AUTO:
            return self.cpus
        return self._positive_number("workers", value, " or auto")

    def _duration(self, name: str) -> float:
        try:
            seconds = parse_duration(self[name])
        except ValueError as e:
            raise usage.UsageError(f"--{name}: {e}")
        if seconds <= 0:
            raise usage.UsageError(f"--{name} must be a duration longer than zero, e.g. 30s")
        return seconds

    def _positive_number(self, name: str, value: str | int, alternative: str = "") -> int:
        try:
            number = int(value)
        except ValueError:
            number = 0
        if number < 1:
            raise usage.UsageError(f"--{name} must be a positive whole number{alternative}")
        return number


def _env_name(option: str) -> str:
    return "NANOMDM_" + option.upper().replace("-", "_")


def makeService(config: Options, reactor=None) -> IService:
    top = MultiService()
    NanoMDMService(config.settings, reactor).setServiceParent(top)
    return top
