"""
NanoMDM's MySQL DSN (go-sql-driver/mysql form) as PyMySQL connect arguments.

``[user[:password]@][protocol[(address)]]/dbname[?param=value&...]``, e.g.
``nanomdm:secret@tcp(db.example:3306)/nanomdm?timeout=5s``,
``nanomdm@unix(/run/mysqld/mysqld.sock)/nanomdm`` or ``nanomdm:secret@/nanomdm``
(TCP to 127.0.0.1:3306, the driver's default).
"""

import re
import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from twisted.logger import Logger

from pymysql.constants import CLIENT

from ..duration import parse_duration

_log = Logger()

_ADDRESS = re.compile(r"^(?P<protocol>\w+)(?:\((?P<address>[^)]*)\))?$")

# go-sql-driver parameters with a PyMySQL counterpart; the value converter
# turns the DSN text into PyMySQL's argument.
_PARAMS = {
    "charset": ("charset", lambda v: v.split(",")[0]),
    "timeout": ("connect_timeout", parse_duration),
    "readTimeout": ("read_timeout", parse_duration),
    "writeTimeout": ("write_timeout", parse_duration),
}
# Parameters that change nothing for us: Go-side conversions and defaults we share.
_HARMLESS = {"parseTime", "loc", "collation", "interpolateParams", "multiStatements"}


# go-sql-driver's tls values we can honour ("preferred" has no opportunistic
# PyMySQL counterpart: it encrypts without verifying, as skip-verify).
_TLS_MODES = {"true", "false", "", "skip-verify", "preferred"}


def _tls_context(verify: bool) -> ssl.SSLContext:
    """``tls=true``: verified against the system CAs; otherwise encrypted only."""
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


@dataclass(frozen=True)
class MySQLDSN:
    user: str = ""
    password: str = ""
    protocol: str = "tcp"
    address: str = ""
    database: str = ""
    params: dict[str, str] = field(default_factory=dict)

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = (self.address or "127.0.0.1:3306").rpartition(":")
        if not host:  # a bare host name without a port
            return port, 3306
        return host.strip("[]"), int(port)

    def connect_kwargs(self) -> dict[str, Any]:
        """PyMySQL ``connect()`` keyword arguments for this DSN."""
        kwargs: dict[str, Any] = {
            "user": self.user,
            "password": self.password,
            "database": self.database or None,
            "charset": "utf8mb4",
            # rowcount of an UPDATE counts the rows it matched, as SQLite and
            # PostgreSQL report it, not only those it changed.
            "client_flag": CLIENT.FOUND_ROWS,
        }
        if self.protocol == "unix":
            kwargs["unix_socket"] = self.address or "/tmp/mysql.sock"
        else:
            kwargs["host"], kwargs["port"] = self.host_port
        for name, value in self.params.items():
            if name in _PARAMS:
                argument, convert = _PARAMS[name]
                kwargs[argument] = convert(value)
            elif name == "tls":
                if value not in ("false", ""):
                    kwargs["ssl"] = _tls_context(verify=value == "true")
            elif name not in _HARMLESS:
                _log.warn("MySQL DSN parameter {name} is not supported: ignored", name=name)
        return kwargs

    def redacted(self) -> str:
        """The DSN for logs: the password replaced."""
        credentials = self.user + (":***" if self.password else "")
        return f"{credentials}@{self.protocol}({self.address})/{self.database}"


def parse_dsn(dsn: str) -> MySQLDSN:
    """Parse a go-sql-driver DSN; ValueError names what is wrong."""
    head, slash, tail = dsn.rpartition("/")
    if not slash:
        raise ValueError(
            f"invalid MySQL DSN {dsn!r}: expected user:password@tcp(host:port)/dbname"
        )
    database, _, query = tail.partition("?")
    credentials, at, location = head.rpartition("@")
    if not at:
        credentials, location = "", head
    user, _, password = credentials.partition(":")
    protocol, address = "tcp", ""
    if location:
        match = _ADDRESS.match(location)
        if match is None:
            raise ValueError(
                f"invalid MySQL DSN address {location!r}: expected tcp(host:port) "
                "or unix(/path/to/socket)"
            )
        protocol, address = match.group("protocol"), match.group("address") or ""
    if protocol not in ("tcp", "unix"):
        raise ValueError(f"unsupported MySQL DSN protocol {protocol!r}: use tcp or unix")
    params = dict(parse_qsl(query, keep_blank_values=True))
    if params.get("tls", "") not in _TLS_MODES:
        # go-sql-driver refuses a name it has no registered config for; never fall
        # back to plain text when the operator asked for something else.
        raise ValueError(
            f"MySQL DSN parameter tls={params['tls']!r} is not supported: "
            "use true, skip-verify, preferred or false"
        )
    return MySQLDSN(
        user=user,
        password=password,
        protocol=protocol,
        address=address,
        database=database,
        params=params,
    )
