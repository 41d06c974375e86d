"""deploy/nanomdm-tw.service as systemd reads it, and the example .tac with a service of its own."""

import configparser
import json
import os
import re
import shlex
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from .serving import free_port, wait_until_serving

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "deploy" / "nanomdm-tw.service"
SYSTEMD_ANALYZE = "/usr/bin/systemd-analyze"
INSTALLED_TWISTD = "/opt/nanomdm-tw/venv/bin/twistd"
TWISTD = str(Path(sys.executable).parent / "twistd")


def rendered_unit(folder: Path, text: str | None = None) -> Path:
    """The unit with ExecStart on this venv's twistd: verify wants a program that exists."""
    text = UNIT.read_text() if text is None else text
    assert INSTALLED_TWISTD in text
    path = folder / UNIT.name
    path.write_text(text.replace(INSTALLED_TWISTD, TWISTD))
    return path


def verify_problems(unit: Path) -> list[str]:
    """What ``systemd-analyze verify`` says about the unit: it exits 0 even on unknown keys."""
    completed = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    output = (completed.stdout + completed.stderr).splitlines()
    problems = [line for line in output if unit.name in line]
    if completed.returncode != 0:
        problems.append(f"exit status {completed.returncode}: {output}")
    return problems


def unit_settings() -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str
    parser.read_string(UNIT.read_text())
    return {**parser["Unit"], **parser["Service"], **parser["Install"]}


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    assert verify_problems(rendered_unit(tmp_path)) == []


def test_the_unit_check_catches_mistakes(tmp_path: Path) -> None:
    broken = UNIT.read_text().replace("ProtectSystem=strict", "ProtectSystem=very\nProtectEverything=yes")
    assert len(verify_problems(rendered_unit(tmp_path, broken))) == 2


def test_the_unit_is_sandboxed(tmp_path: Path) -> None:
    completed = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=yes", str(rendered_unit(tmp_path))],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    exposure = re.search(r"Overall exposure level for \S+: ([0-9.]+)", completed.stdout)
    assert exposure is not None, completed.stdout + completed.stderr
    # systemd's scale: 0 (locked down) .. 10 (unprotected); a plain unit scores 9.6.
    assert float(exposure.group(1)) <= 2.0

    settings = unit_settings()
    assert settings["DynamicUser"] == "yes"
    assert settings["WorkingDirectory"] == "/var/lib/" + settings["StateDirectory"]
    assert int(settings["LimitNOFILE"]) >= 65536
    assert settings["Restart"] == "on-failure"
    assert settings["CapabilityBoundingSet"] == ""


def test_exec_start_serves_with_its_data_in_the_working_directory(tmp_path: Path) -> None:
    """The unit's very command line; without -storage-dsn the SQLite folder is ./db."""
    argv = shlex.split(unit_settings()["ExecStart"].replace(INSTALLED_TWISTD, TWISTD))
    port = free_port()
    environ = dict(os.environ, PYTHONPATH=str(ROOT), NANOMDM_DEV="1",
                   NANOMDM_LISTEN=f"127.0.0.1:{port}")  # fmt: skip
    environ.pop("NANOMDM_STORAGE_DSN", None)
    process = subprocess.Popen(argv, cwd=tmp_path, env=environ, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        status, _ = wait_until_serving(port, process)
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert status == 200
    assert (tmp_path / "db" / "devca" / "ca.pem").exists()
    assert (tmp_path / "db" / "api-key").exists()
    # twistd ends by its SIGTERM, which systemd counts as a clean stop (no restart).
    assert process.returncode == -15, output
    assert "Server Shut Down." in output


# examples/with-webhook-consumer.tac


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.loads(answer.read())


def test_example_tac_runs_the_server_and_its_webhook_consumer(tmp_path: Path) -> None:
    port, consumer_port = free_port(), free_port()
    environ = dict(
        os.environ, PYTHONPATH=str(ROOT), NANOMDM_DEV="1",
        NANOMDM_LISTEN=f"127.0.0.1:{port}", NANOMDM_STORAGE_DSN=str(tmp_path / "db"),
        WEBHOOK_CONSUMER_PORT=str(consumer_port),
    )  # fmt: skip
    tac = ROOT / "examples" / "with-webhook-consumer.tac"
    process = subprocess.Popen(
        [TWISTD, "--pidfile=", "--logfile=-", "-ny", str(tac)], cwd=tmp_path, env=environ,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        wait_until_serving(port, process)
        assert get_json(f"http://127.0.0.1:{consumer_port}/webhook") == {}
        enrolled = subprocess.run(
            [sys.executable, "-m", "nanomdm_tw.tools.sim", "--url", f"http://127.0.0.1:{port}",
             "--ca-dir", str(tmp_path / "db" / "devca"), "--state", str(tmp_path / "sim"),
             "enroll"],
            env=environ, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert enrolled.returncode == 0, enrolled.stderr
        # The webhook is sent after the device's answer: wait for it to arrive.
        deadline = time.monotonic() + 30
        while (seen := get_json(f"http://127.0.0.1:{consumer_port}/webhook")) != {
            "mdm.Authenticate": 1, "mdm.TokenUpdate": 1,
        } and time.monotonic() < deadline:  # fmt: skip
            time.sleep(0.1)
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert seen == {"mdm.Authenticate": 1, "mdm.TokenUpdate": 1}, output
    device_id = enrolled.stdout.split()[-1]
    assert f"webhook mdm.TokenUpdate enrollment_id={device_id}" in output
