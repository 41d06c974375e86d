"""
Fixtures of the admin console's browser tests: a live server with a fake
APNs and simulated devices (one of them hostile), Debian's Chromium driven by
selenium, and the folder the screenshots go to.

Chromium missing fails these tests: ``make test`` installs it (scripts/ensure-browser).
"""

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from nanomdm_tw.crypto.devca import DevelopmentCA
from nanomdm_tw.mdm.catalogue import make_command
from nanomdm_tw.tools.sim import DEFAULT_TOPIC

from .console import WIDE, Console
from .live import API_KEY, ROOT, FakeAPNsProcess, LiveServer
from .phones import HOSTILE_NAME, HOSTILE_SCRIPT, Phone, hostile_error_chain

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# Selenium Manager would otherwise fetch a browser or driver of its own.
os.environ["SE_OFFLINE"] = "true"


@pytest.fixture(scope="session")
def test_output() -> Path:
    """$NANOMDM_TEST_OUTPUT, else test-output/admin/ in the repository; earlier runs' files go."""
    folder = Path(os.environ.get("NANOMDM_TEST_OUTPUT") or ROOT / "test-output" / "admin")
    folder.mkdir(parents=True, exist_ok=True)
    for earlier in [*folder.glob("test_*.png"), *folder.glob("test_*.log")]:
        earlier.unlink()
    return folder


@pytest.fixture(scope="session")
def ca() -> DevelopmentCA:
    return DevelopmentCA.create()


@pytest.fixture(scope="session")
def apns(tmp_path_factory, ca):
    fake = FakeAPNsProcess(tmp_path_factory.mktemp("apns"), ca)
    try:
        fake.start()
        yield fake
    finally:
        fake.stop()


@pytest.fixture(scope="session")
def server(tmp_path_factory, ca, apns):
    """The server with --api and the dev topic's push certificate, pushing to the fake APNs."""
    live = LiveServer(tmp_path_factory.mktemp("live"), ca, ["-api", API_KEY], apns_url=apns.url)
    try:
        live.start()
        live.upload_push_cert(DEFAULT_TOPIC)
        yield live
    finally:
        live.stop()


@dataclass
class Fleet:
    plain: Phone  # a device that answers what it is asked
    hostile: Phone  # a device whose every string is markup
    hostile_user: Phone  # a user channel on it, UserLongName hostile too
    hostile_commands: dict[str, str]  # RequestType -> CommandUUID it answered


@pytest.fixture(scope="session")
def fleet(server, ca) -> Fleet:
    """Devices enrolled through real HTTP; the hostile one already answered two commands."""
    plain = Phone.create(server.url, ca).enroll("Ada's MacBook")
    hostile = Phone.create(server.url, ca, serial_number=HOSTILE_NAME).enroll(HOSTILE_NAME)
    hostile_user = hostile.enroll_user("mallory", HOSTILE_NAME)
    commands = {}
    for request_type, fields in (("DeviceInformation", {"Queries": ["DeviceName"]}),
                                 ("ProfileList", {})):  # fmt: skip
        answer = server.enqueue(hostile.id, make_command(request_type, **fields)).json()
        commands[request_type] = answer["command_uuid"]
    command = hostile.idle()
    assert command["CommandUUID"] == commands["DeviceInformation"]
    command = hostile.answer(
        command,
        QueryResponses={"DeviceName": HOSTILE_NAME, "OSVersion": HOSTILE_SCRIPT},
    )
    assert command["CommandUUID"] == commands["ProfileList"]
    assert hostile.answer(command, "Error", ErrorChain=hostile_error_chain()) is None
    return Fleet(plain, hostile, hostile_user, commands)


@pytest.fixture(scope="session")
def downloads(tmp_path_factory) -> Path:
    """Where Chromium saves downloads."""
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="session")
def chromium(downloads):
    """Debian's Chromium, headless; unanswered dialogs stay open so tests can see them."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: run scripts/ensure-browser (make test does)")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     f"--window-size={WIDE[0]},{WIDE[1]}", "--lang=en-US"):  # fmt: skip
        options.add_argument(argument)
    options.unhandled_prompt_behavior = "ignore"
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior",
                           {"behavior": "allow", "downloadPath": str(downloads)})  # fmt: skip
    try:
        yield driver
    finally:
        driver.quit()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keeps each phase's report on the test, for the fixtures' teardown to look at."""
    report = yield
    setattr(item, "report_" + report.when, report)
    return report


def _console(request, chromium, server, test_output, api_key: str | None):
    page = Console(chromium, server.url, test_output, request.node.name)
    page.start(api_key)
    yield page
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:  # what the browser showed, and said
        page.screenshot("failed")
        log = test_output / f"{page.screenshot_name('failed')}.log"
        log.write_text("\n".join(page.browser_log()) + "\n")


@pytest.fixture
def console(request, chromium, server, test_output):
    """The console with the API key already entered (``anonymous_console`` without)."""
    yield from _console(request, chromium, server, test_output, API_KEY)


@pytest.fixture
def anonymous_console(request, chromium, server, test_output):
    yield from _console(request, chromium, server, test_output, None)


@pytest.fixture
def own_server(request, chromium, test_output, ca, tmp_path):
    """``own_server(*flags)``: a server of this test's own with --api, and the console on it."""
    started: list[LiveServer] = []

    def start(*flags: str) -> tuple[LiveServer, Console]:
        live = LiveServer(tmp_path, ca, ["-api", API_KEY, *flags])
        started.append(live)
        live.start()
        page = Console(chromium, live.url, test_output, request.node.name)
        page.start(API_KEY)
        return live, page

    yield start
    for live in started:
        live.stop()
