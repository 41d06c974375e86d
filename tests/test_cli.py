"""
``nanomdm-tw``: NanoMDM's command line as Go's flag package reads it, the same
settings as ``twistd nanomdm``, and the one settings check for every way in.
"""

import base64
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from nanomdm_tw import __version__
from nanomdm_tw.cli import FlagError, options_from_flags, parse_go_flags
from nanomdm_tw.server import NanoMDMService
from nanomdm_tw.settings import Settings, SettingsError, StorageSpec
from nanomdm_tw.tap import GO_FALSE, GO_TRUE, Options
from twisted.python.usage import UsageError

from .serving import free_port, wait_until_serving

ROOT = Path(__file__).resolve().parent.parent


def go_settings(argv: list[str], environ: dict[str, str] | None = None) -> Settings:
    values, leftover = parse_go_flags(argv)
    assert leftover == []
    return options_from_flags(values, environ or {}).settings


def twistd_settings(argv: list[str], environ: dict[str, str] | None = None) -> Settings:
    options = Options(environ=environ or {})
    options.parseOptions(argv)
    return options.settings


@pytest.fixture
def ca(tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    path.write_text("x")
    return str(path)


@pytest.mark.parametrize(
    "argv",
    [
        ["-api", "KEY", "-ca", "{ca}", "-debug", "-storage", "inmem", "-listen", ":9001"],
        ["--api", "KEY", "--ca", "{ca}", "--debug", "--storage", "inmem", "--listen", ":9001"],
        ["-api=KEY", "-ca={ca}", "-debug=true", "-storage=inmem", "--listen=:9001"],
        ["-api", "KEY", "-ca", "{ca}", "-debug=T", "-storage", "inmem", "-listen=:9001"],
    ],
)
def test_go_flag_forms_mean_what_twistd_flags_mean(argv: list[str], ca: str) -> None:
    argv = [a.replace("{ca}", ca) for a in argv]
    assert go_settings(argv) == twistd_settings(
        ["--api", "KEY", "--ca", ca, "--debug", "--storage", "inmem", "--listen", ":9001"]
    )


def test_metrics_listen_flag(ca: str) -> None:
    argv = ["-ca", ca, "-metrics-listen", ":9100"]
    assert go_settings(argv) == twistd_settings(["--ca", ca, "--metrics-listen", ":9100"])
    assert go_settings(argv).metrics_listen == "tcp:9100"
    environ = {"NANOMDM_METRICS_LISTEN": "[::1]:9100"}
    assert go_settings(["-ca", ca], environ).metrics_listen == r"tcp:9100:interface=\:\:1"


def test_timeout_flags(ca: str) -> None:
    argv = ["-ca", ca, "-storage-timeout=5s", "-http-timeout", "1m", "-storage-max-waiting", "9"]
    settings = go_settings(argv)
    assert settings == twistd_settings(
        ["--ca", ca, "--storage-timeout", "5s", "--http-timeout", "1m",
         "--storage-max-waiting", "9"]
    )  # fmt: skip
    assert (settings.storage_timeout, settings.http_timeout, settings.storage_max_waiting) == (
        5.0, 60.0, 9,
    )  # fmt: skip


def test_repeated_storage_and_the_dsn_alias(ca: str) -> None:
    settings = go_settings(
        ["-ca", ca, "-storage", "sqlite", "-storage-dsn", "a", "-storage", "mysql",
         "-dsn", "u@tcp(db:3306)/b", "-storage-options", "", "-storage-options", "delete=1"]
    )  # fmt: skip
    assert settings.storage == StorageSpec("sqlite", "a", "")
    assert settings.extra_storages == (StorageSpec("mysql", "u@tcp(db:3306)/b", "delete=1"),)


def test_a_false_flag_beats_a_true_variable(ca: str) -> None:
    environ = {"NANOMDM_DEBUG": "1", "NANOMDM_RETRO": "true"}
    settings = go_settings(["-ca", ca, "-debug=false"], environ)
    assert (settings.debug, settings.retro) == (False, True)


@pytest.mark.parametrize(
    "argv, environ, admin",
    [
        ([], {}, True),  # on by default, unlike every other boolean
        (["-admin=false"], {}, False),
        (["-admin=0"], {"NANOMDM_ADMIN": "true"}, False),
        ([], {"NANOMDM_ADMIN": "false"}, False),
        (["-admin"], {"NANOMDM_ADMIN": "f"}, True),
        ([], {"NANOMDM_ADMIN": "1"}, True),
    ],
)
def test_admin_console_flag_defaults_to_true(argv, environ, admin: bool, ca: str) -> None:
    assert go_settings(["-ca", ca, *argv], environ).admin is admin


@pytest.mark.parametrize("environ, admin", [({}, True), ({"NANOMDM_ADMIN": "false"}, False)])
def test_admin_console_under_twistd(environ, admin: bool, ca: str) -> None:
    """twistd's flags can only say true: the variable turns the console off there."""
    assert twistd_settings(["--ca", ca], environ).admin is admin
    assert twistd_settings(["--ca", ca, "--admin"], environ).admin is True


@pytest.mark.parametrize("spelling", sorted(GO_TRUE | GO_FALSE))
def test_variables_take_go_booleans(spelling: str, ca: str) -> None:
    expected = spelling in GO_TRUE
    assert go_settings(["-ca", ca], {"NANOMDM_DEBUG": spelling}).debug is expected
    assert twistd_settings(["--ca", ca], {"NANOMDM_CHECKIN": spelling}).checkin is expected


@pytest.mark.parametrize("spelling", ["yes", "on", "2", "tRUE", ""])
def test_an_invalid_boolean_variable_is_an_error(spelling: str, ca: str) -> None:
    with pytest.raises(UsageError, match="NANOMDM_DUMP: invalid boolean value"):
        go_settings(["-ca", ca], {"NANOMDM_DUMP": spelling})


def test_parsing_stops_at_the_first_argument_that_is_no_flag() -> None:
    values, leftover = parse_go_flags(["-debug", "false", "-api", "KEY"])
    assert values == {"debug": True}
    assert leftover == ["false", "-api", "KEY"]
    assert parse_go_flags(["-retro", "--", "-api", "KEY"]) == ({"retro": True}, ["-api", "KEY"])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["-nope"], "flag provided but not defined: -nope"),
        (["-api"], "flag needs an argument: -api"),
        (["-debug=maybe"], "invalid boolean value 'maybe' for -debug"),
        (["---api", "x"], "bad flag syntax: ---api"),
    ],
)
def test_command_lines_go_refuses(argv: list[str], message: str) -> None:
    with pytest.raises(FlagError, match=message):
        parse_go_flags(argv)


# One check for every way in: flags, a .tac, Python.


def test_settings_without_a_ca_refuse_to_build_a_server() -> None:
    with pytest.raises(SettingsError, match="--ca is required"):
        NanoMDMService(Settings(storage=StorageSpec("inmem", "", "")))
    with pytest.raises(SettingsError, match="--migration needs --api"):
        Settings(dev=True, migration=True).check()
    with pytest.raises(SettingsError, match="cannot share inmem"):
        Settings(dev=True, workers=2, storage=StorageSpec("inmem", "", "")).check()


def test_a_tac_without_a_ca_does_not_start(tmp_path: Path) -> None:
    tac = tmp_path / "open.tac"
    tac.write_text(
        "from twisted.application.service import Application\n"
        "from nanomdm_tw.server import NanoMDMService\n"
        "from nanomdm_tw.settings import Settings, StorageSpec\n"
        "application = Application('open')\n"
        "NanoMDMService(Settings(storage=StorageSpec('inmem', '', ''))"
        ").setServiceParent(application)\n"
    )
    completed = subprocess.run(
        [str(Path(sys.executable).parent / "twistd"), "-ny", str(tac), "--pidfile=",
         "--logfile=-"],
        cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert completed.returncode != 0
    assert "--ca is required" in completed.stdout + completed.stderr


# The console script, as a unit file runs it.


def nanomdm_tw(*argv: str, cwd: Path, **kwargs) -> subprocess.Popen:
    """The command from this source tree (the installed script runs the installed copy)."""
    return subprocess.Popen(
        [sys.executable, "-m", "nanomdm_tw.cli", *argv],
        cwd=cwd, env=dict(os.environ, PYTHONPATH=str(ROOT)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs,
    )  # fmt: skip


def test_unknown_flag_is_one_line_and_exit_2(tmp_path: Path) -> None:
    process = nanomdm_tw("-api", "KEY", "-frobnicate", cwd=tmp_path)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 2
    assert err.splitlines() == [
        "nanomdm-tw: flag provided but not defined: -frobnicate (see nanomdm-tw -h)"
    ]
    assert out == ""


def test_contradicting_settings_exit_1(tmp_path: Path) -> None:
    process = nanomdm_tw("-storage", "inmem", cwd=tmp_path)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert err.splitlines() == [
        "nanomdm-tw: --ca is required to authenticate devices (or --dev for a development CA)"
    ]


def test_installed_script_and_version() -> None:
    script = Path(sys.executable).parent / "nanomdm-tw"
    completed = subprocess.run([str(script), "-version"], capture_output=True, text=True)
    assert completed.returncode == 0
    assert completed.stdout.strip() == __version__


def test_a_nanomdm_unit_files_command_line_serves(tmp_path: Path) -> None:
    """NanoMDM's ExecStart with only the binary changed: serves, logs to stdout, stops on TERM."""
    from nanomdm_tw.crypto.devca import DevelopmentCA

    DevelopmentCA.create().save(tmp_path / "ca")
    port = free_port()
    process = nanomdm_tw(
        "-ca", str(tmp_path / "ca" / "ca.pem"), "-api", "s3cret", "-storage", "inmem",
        "-listen", f"127.0.0.1:{port}", "-debug", "-checkin",
        cwd=tmp_path,
    )  # fmt: skip
    try:
        assert wait_until_serving(port, process)[0] == 200
        api = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/enqueue/NOT-ENROLLED?nopush=1",
            method="PUT",
            data=b"not a plist",
            headers={"Authorization": "Basic " + base64.b64encode(b"nanomdm:s3cret").decode()},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(api)
        assert refused.value.code == 400
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert f"nanomdm-tw listening on 127.0.0.1:{port} (storage inmem)" in out
    assert "PUT /v1/enqueue/NOT-ENROLLED 400" in out
    assert "s3cret" not in out + err
