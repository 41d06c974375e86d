"""The command line: NanoMDM's flags, NANOMDM_* variables, and the twistd plugin."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
from twisted.python.usage import UsageError

from nanomdm_tw.resources.body import DEFAULT_MAX_BODY_SIZE
from nanomdm_tw.settings import Settings, StorageSpec
from nanomdm_tw.tap import Options, endpoint_from_listen

from .serving import free_port, wait_until_serving

ROOT = Path(__file__).resolve().parent.parent


def parse(
    argv: list[str], environ: dict[str, str] | None = None, cpus: int | None = None
) -> Settings:
    options = Options(environ=environ or {}, cpus=cpus)
    options.parseOptions(argv)
    return options.settings


def test_defaults_with_ca(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    assert parse(["--ca", str(ca)]) == Settings(
        listen="tcp:9000",
        ca=str(ca),
        storage=StorageSpec("sqlite", "db", ""),
        max_body_size=DEFAULT_MAX_BODY_SIZE,
    )


def test_every_flag(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    intermediate = tmp_path / "int.pem"
    ca.write_text("x")
    intermediate.write_text("x")
    argv = [
        "--listen", "127.0.0.1:9001", "--api", "k", "--ca", str(ca),
        "--intermediate", str(intermediate), "--cert-header", "X-Client-Cert",
        "--checkin", "--debug", "--dump", "--retro", "--ua-zl-dc",
        "--storage", "inmem", "--storage-options", "delete=1", "--max-body-size", "1000",
        "--migration", "--apns-url", "https://api.development.push.apple.com",
        "--apns-ca", str(ca), "--push-expiration", "1h30m",
        "--http-timeout", "1m", "--webhook-timeout", "5s", "--apns-timeout", "2500ms",
        "--storage-timeout", "45s", "--storage-max-waiting", "50",
        "--webhook-queue-bytes", "1048576", "--shutdown-grace", "1m30s",
    ]  # fmt: skip
    assert parse(argv) == Settings(
        listen="tcp:9001:interface=127.0.0.1",
        api_key="k",
        ca=str(ca),
        intermediate=str(intermediate),
        cert_header="X-Client-Cert",
        checkin=True,
        debug=True,
        dump=True,
        retro=True,
        ua_zl_dc=True,
        storage=StorageSpec("inmem", "", "delete=1"),
        max_body_size=1000,
        migration=True,
        apns_url="https://api.development.push.apple.com",
        apns_ca=str(ca),
        push_expiration=5400.0,
        http_timeout=60.0,
        webhook_timeout=5.0,
        apns_timeout=2.5,
        storage_timeout=45.0,
        storage_max_waiting=50,
        webhook_queue_bytes=1048576,
        shutdown_grace=90.0,
    )


def test_timeouts_default_and_come_from_the_environment() -> None:
    defaults = parse(["--dev"])
    assert (defaults.http_timeout, defaults.webhook_timeout, defaults.apns_timeout,
            defaults.storage_timeout, defaults.storage_max_waiting) == (30.0, 10.0, 10.0, 30.0, 1000)  # fmt: skip
    environ = {
        "NANOMDM_HTTP_TIMEOUT": "15s",
        "NANOMDM_WEBHOOK_TIMEOUT": "3s",
        "NANOMDM_APNS_TIMEOUT": "4s",
        "NANOMDM_STORAGE_TIMEOUT": "10s",
        "NANOMDM_STORAGE_MAX_WAITING": "200",
    }
    assert parse(["--dev", "--storage-timeout", "20s"], environ) == Settings(
        dev=True,
        http_timeout=15.0,
        webhook_timeout=3.0,
        apns_timeout=4.0,
        storage_timeout=20.0,  # the flag beats the variable
        storage_max_waiting=200,
    )


def test_workers() -> None:
    settings = parse(["--dev", "--workers", "3", "--storage-dsn", "/var/lib/nanomdm"])
    assert settings == Settings(
        dev=True, workers=3, storage=StorageSpec("sqlite", "/var/lib/nanomdm", "")
    )


MYSQL = StorageSpec("mysql", "u@tcp(db:3306)/nanomdm", "")
PGSQL = StorageSpec("pgsql", "host=db dbname=nanomdm", "")
SQLITE = StorageSpec("sqlite", "db", "")
INMEM = StorageSpec("inmem", "", "")


def storage_flags(*specs: StorageSpec) -> list[str]:
    return [f for s in specs for f in ("--storage", s.name, "--storage-dsn", s.dsn)]


@pytest.mark.parametrize(
    "specs, workers",
    [
        ((MYSQL,), 4),
        ((PGSQL,), 4),
        ((SQLITE,), 1),
        ((INMEM,), 1),
        ((MYSQL, PGSQL), 4),
        ((PGSQL, SQLITE), 1),
        ((MYSQL, INMEM), 1),
    ],
)
def test_workers_default_one_per_cpu_on_database_servers(specs, workers: int) -> None:
    settings = parse(["--dev", *storage_flags(*specs)], cpus=4)
    assert settings == Settings(
        dev=True, workers=workers, storage=specs[0], extra_storages=specs[1:]
    )


@pytest.mark.parametrize(
    "argv, environ, cpus, workers",
    [
        (["--workers", "auto"], {}, 3, 3),
        (["--workers", "AUTO"], {"NANOMDM_WORKERS": "1"}, 3, 3),
        ([], {"NANOMDM_WORKERS": "auto"}, 6, 6),
        (["--workers", "2"], {"NANOMDM_WORKERS": "auto"}, 6, 2),
    ],
)
def test_workers_auto(argv, environ, cpus: int, workers: int) -> None:
    settings = parse(["--dev", *argv], environ, cpus=cpus)
    assert settings == Settings(dev=True, workers=workers, storage=SQLITE)


def test_explicit_workers_beat_the_storage_default() -> None:
    settings = parse(["--dev", "--workers", "1", *storage_flags(PGSQL)], cpus=4)
    assert settings == Settings(dev=True, workers=1, storage=PGSQL)


def test_auto_on_one_cpu_is_one_process_even_with_inmem() -> None:
    settings = parse(["--dev", "--workers", "auto", *storage_flags(INMEM)], cpus=1)
    assert settings == Settings(dev=True, workers=1, storage=INMEM)


def test_auto_on_several_cpus_cannot_share_inmem() -> None:
    with pytest.raises(UsageError, match="cannot share inmem"):
        parse(["--dev", "--workers", "auto", *storage_flags(INMEM)], cpus=2)


def test_environment_fills_what_flags_leave_unset() -> None:
    environ = {
        "NANOMDM_API": "from-env",
        "NANOMDM_LISTEN": ":9100",
        "NANOMDM_DEV": "true",
        "NANOMDM_STORAGE": "inmem",
        "NANOMDM_DUMP": "1",
        "NANOMDM_SHUTDOWN_GRACE": "45s",
    }
    settings = parse(["--api", "from-flag"], environ)
    assert settings == Settings(
        listen="tcp:9100",
        api_key="from-flag",
        dev=True,
        dump=True,
        storage=StorageSpec("inmem", "", ""),
        shutdown_grace=45.0,
    )


def test_metrics_listen_flag_and_variable() -> None:
    assert parse(["--dev", "--metrics-listen", ":9100"]) == Settings(
        dev=True, metrics_listen="tcp:9100"
    )
    environ = {"NANOMDM_METRICS_LISTEN": "127.0.0.1:9100"}
    assert parse(["--dev"], environ) == Settings(
        dev=True, metrics_listen="tcp:9100:interface=127.0.0.1"
    )
    assert parse(["--dev", "--metrics-listen", "unix:/run/m.sock"], environ) == Settings(
        dev=True, metrics_listen="unix:/run/m.sock"
    )


@pytest.mark.parametrize(
    "listen, endpoint",
    [
        (":9000", "tcp:9000"),
        ("0.0.0.0:8080", "tcp:8080:interface=0.0.0.0"),
        ("[::1]:9000", r"tcp:9000:interface=\:\:1"),
        ("tcp:9000:interface=::1", "tcp:9000:interface=::1"),
        ("unix:/run/nanomdm.sock", "unix:/run/nanomdm.sock"),
    ],
)
def test_listen_forms(listen: str, endpoint: str) -> None:
    assert endpoint_from_listen(listen) == endpoint


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--dev", "--disable-mdm"], "--disable-mdm needs --api"),
        ([], "--ca is required"),
        (["--ca", "/nonexistent/ca.pem"], "no such file"),
        (["--dev", "--storage", "nosuch"], "unknown backend"),
        (["--dev", "--storage-options", "delete"], "--storage-options"),
        (["--dev", "--listen", "nonsense"], "--listen"),
        (["--dev", "--metrics-listen", "nonsense"], "--metrics-listen: cannot understand"),
        (["--dev", "--metrics-listen", ":9000"], "--metrics-listen must differ from --listen"),
        (["--dev", "--max-body-size", "big"], "--max-body-size"),
        (["--dev", "--webhook-queue-bytes", "0"], "--webhook-queue-bytes"),
        (["--dev", "--workers", "0"], "--workers must be a positive whole number or auto"),
        (["--dev", "--workers", "many"], "--workers must be a positive whole number or auto"),
        (["--dev", "--workers", "2", "--storage", "inmem"], "cannot share inmem"),
        (["--dev", "--migration"], "--migration needs --api"),
        (["--dev", "--push-expiration", "soon"], "--push-expiration"),
        (["--dev", "--shutdown-grace", "10"], "--shutdown-grace: invalid duration"),
        (["--dev", "--apns-ca", "/nonexistent/ca.pem"], "no such file"),
        (["--dev", "--http-timeout", "soon"], "--http-timeout: invalid duration"),
        (["--dev", "--webhook-timeout", "0s"], "--webhook-timeout must be a duration longer than zero"),
        (["--dev", "--apns-timeout", "-1s"], "--apns-timeout"),
        (["--dev", "--storage-timeout", "30"], "--storage-timeout: invalid duration"),
        (["--dev", "--storage-max-waiting", "0"], "--storage-max-waiting must be a positive whole number"),
    ],
)
def test_contradictions_stop_with_one_clear_line(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse(argv)


def test_help_lists_every_flag() -> None:
    text = str(Options(environ={}))
    assert "--workers=" in text and "auto for one per CPU" in text
    names = [name for name, *_ in Options.optParameters + Options.optFlags]
    assert [name for name in names if f"--{name}" not in text] == []
    assert "--dsn=" in text and "--storage-dsn=" in text


def test_plugin_is_found() -> None:
    names = [maker.tapname for maker in getPlugins(IServiceMaker)]
    assert "nanomdm" in names


def _run_until_version(args: list[str], cwd: Path, port: int) -> dict:
    environ = dict(os.environ, PYTHONPATH=str(ROOT))
    twistd = Path(sys.executable).parent / "twistd"
    process = subprocess.Popen(
        [str(twistd), "--pidfile=", "--logfile=-", *args],
        cwd=cwd, env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        return wait_until_serving(port, process)
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_twistd_plugin_serves_version(tmp_path: Path) -> None:
    port = free_port()
    status, body = _run_until_version(
        ["-n", "nanomdm", "--dev", "--listen", f"127.0.0.1:{port}",
         "--storage-dsn", str(tmp_path / "db")],
        tmp_path, port,
    )  # fmt: skip
    assert status == 200
    assert b'"version"' in body
    assert (tmp_path / "db" / "devca" / "ca.pem").exists()
    assert (tmp_path / "db" / "api-key").stat().st_mode & 0o077 == 0


def test_tac_starts(tmp_path: Path) -> None:
    port = free_port()
    environ_extra = {
        "NANOMDM_DEV": "1",
        "NANOMDM_LISTEN": f"127.0.0.1:{port}",
        "NANOMDM_STORAGE_DSN": str(tmp_path / "db"),
    }
    os.environ.update(environ_extra)
    try:
        status, body = _run_until_version(["-ny", str(ROOT / "nanomdm.tac")], tmp_path, port)
    finally:
        for name in environ_extra:
            del os.environ[name]
    assert status == 200
    assert b'"version"' in body
