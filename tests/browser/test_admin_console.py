"""
The admin console in a real Chromium against a live server with simulated
devices: what an administrator does with it, what a hostile device cannot do
to it, and the headers that hold it to its own origin.
"""

import sqlite3
import urllib.parse
from contextlib import closing

import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

from nanomdm_tw.mdm.catalogue import make_command
from nanomdm_tw.tools.sim import DEFAULT_TOPIC

from .console import NARROW, Console
from .live import API_KEY, LiveServer, http, push_cert_pem
from .phones import HOSTILE_NAME, HOSTILE_SCRIPT, Phone

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
NEAR_TOPIC = "com.apple.mgmt.External.99999999-0000-0000-0000-000000000010"


def enrollment_route(enrollment_id: str) -> str:
    return "/enrollment/" + urllib.parse.quote(enrollment_id, safe="")


def row(enrollment_id: str) -> str:
    return f'tr[data-enrollment-id="{enrollment_id}"]'


def enqueue_from_form(console: Console, request_type: str) -> str:
    """Click Enqueue; the CommandUUID from the notice's link to the command."""
    console.find("button#enqueue").click()
    link = console.wait_for('#notice a[href*="#/command/"]')
    assert f"Queued {request_type}" in console.text("#notice")
    return urllib.parse.unquote(link.get_attribute("href").split("#/command/", 1)[1])


def test_enter_key_open_device_enqueue_and_see_its_answer(anonymous_console, server, fleet):
    console, phone = anonymous_console, fleet.plain
    console.driver.get(server.url + "/admin/")
    console.wait_ready("key")
    console.find("input#api-key").send_keys(API_KEY)
    console.find("form#key-form [type=submit]").click()
    console.wait_ready("overview")
    stored = console.driver.execute_script("return sessionStorage.getItem('nanomdm-api-key')")
    assert stored == API_KEY
    assert API_KEY not in console.driver.current_url
    assert console.driver.get_cookies() == []

    console.find('nav#nav a[href="#/devices"]').click()
    console.wait_ready("devices")
    console.find(f'{row(phone.id)} a[href="#{enrollment_route(phone.id)}"]').click()
    console.wait_ready("enrollment")
    assert phone.id in console.text("h1")

    Select(console.find("select#command-type")).select_by_value("DeviceInformation")
    device_name = console.wait_for('input[name="arg-Queries"][value="DeviceName"]')
    if not device_name.is_selected():
        device_name.click()
    command_uuid = enqueue_from_form(console, "DeviceInformation")

    command = phone.idle()  # the device polls and gets what the form queued
    assert command["CommandUUID"] == command_uuid
    assert command["Command"]["RequestType"] == "DeviceInformation"
    assert "DeviceName" in command["Command"]["Queries"]
    assert phone.answer(command, QueryResponses={"DeviceName": "Ada's MacBook"}) is None

    console.visit(enrollment_route(phone.id), "enrollment")
    history = f'table#history tr[data-command-uuid="{command_uuid}"]'
    assert console.text(f"{history} td.status") == "Acknowledged"
    console.open_all_details()
    result = console.find(f"{history} table.result")
    assert "DeviceName" in result.text and "Ada's MacBook" in result.text
    console.screenshot("enrollment-answered")

    console.visit(f"/command/{command_uuid}", "command")
    assert console.text(f"table#fanout {row(phone.id)} td.status") == "Acknowledged"
    assert console.text("#pending-count").strip().startswith("0")


def test_a_wrong_key_is_refused_on_the_key_page(anonymous_console):
    console = anonymous_console
    console.visit("/key", "key")
    console.find("input#api-key").send_keys("not-the-key", Keys.ENTER)
    console.wait_for_text("#message", "API key was refused")
    assert console.find("main#page").get_attribute("data-page") == "key"
    console.screenshot("key-refused")


def test_push_button_reaches_apns(console, fleet, apns):
    console.visit(enrollment_route(fleet.plain.id), "enrollment")
    apns.pushes_received()  # counts from here
    console.find("button#push").click()
    console.wait_for_text("#notice", f"Pushed to {fleet.plain.id}")
    assert apns.pushes_received() == 1


def test_a_server_gone_away_is_said_so(own_server):
    live, console = own_server()
    console.visit("/devices", "devices")
    live.stop()
    console.find('nav#nav a[href="#/overview"]').click()
    console.wait_for_text("#message", "server did not answer")
    assert console.find("main#page").get_attribute("data-state") == "error"
    console.screenshot("overview-no-server")


def test_a_locked_database_is_said_so(own_server, ca):
    """A write that waits past --storage-timeout is a 503: the page says storage is busy."""
    live, console = own_server("-storage-timeout", "1s")
    phone = Phone.create(live.url, ca).enroll()
    console.visit(enrollment_route(phone.id), "enrollment")
    Select(console.find("select#command-type")).select_by_value("ProfileList")
    database = live.folder / "db" / "nanomdm.sqlite3"
    with closing(sqlite3.connect(database, isolation_level=None)) as db:
        db.execute("BEGIN IMMEDIATE")  # the write lock, held by someone else
        console.find("button#enqueue").click()
        console.wait_for_text("#message", "storage is busy or down")
        db.execute("ROLLBACK")
    console.screenshot("enrollment-storage-busy")


def test_keyboard_alone_reaches_a_page_with_visible_focus(console, fleet):
    console.visit("/devices", "devices")
    keyboard = ActionChains(console.driver)
    for _ in range(40):  # the nav comes before the page: a few Tabs reach it
        keyboard.send_keys(Keys.TAB).perform()
        focused = console.driver.switch_to.active_element
        if (focused.get_attribute("href") or "").endswith("#/pushcerts"):
            break
    else:
        raise AssertionError("Tab never reached the push certificates link")
    style, width = console.driver.execute_script(
        "const style = getComputedStyle(document.activeElement);"
        "return [style.outlineStyle, style.outlineWidth]"
    )
    assert style != "none" and width != "0px", "the focused link does not show it"
    keyboard.send_keys(Keys.ENTER).perform()
    console.wait_ready("pushcerts")


def test_hostile_device_data_stays_text(console, fleet):
    hostile = fleet.hostile
    console.visit(f"/devices?q={urllib.parse.quote(hostile.id)}", "devices")
    console.wait_for(row(hostile.id))
    console.assert_inert()

    console.visit(enrollment_route(hostile.id), "enrollment")
    console.open_all_details()
    console.assert_inert()
    seen = console.visible_text()
    assert HOSTILE_NAME in seen  # the serial number and the DeviceInformation answer
    assert HOSTILE_SCRIPT in seen  # the OSVersion answer and the ErrorChain
    failed = fleet.hostile_commands["ProfileList"]
    history = console.find(f'table#history tr[data-command-uuid="{failed}"]')
    assert history.find_element(By.CSS_SELECTOR, "td.status").text == "Error"
    assert HOSTILE_SCRIPT in history.find_element(By.CSS_SELECTOR, ".error-chain").text
    console.screenshot("enrollment-hostile")

    console.visit(enrollment_route(fleet.hostile_user.id), "enrollment")
    console.assert_inert()
    assert HOSTILE_NAME in console.visible_text()  # the user's long name

    console.visit(f"/command/{fleet.hostile_commands['ProfileList']}", "command")
    console.assert_inert()
    console.visit("/devices", "devices")
    console.assert_inert()


def test_every_page_at_1280_and_390_without_csp_violations(console, server, fleet):
    console.browser_log()  # what earlier tests left
    pages = [
        ("/overview", "overview"),
        ("/devices", "devices"),
        (enrollment_route(fleet.hostile.id), "enrollment"),
        (f"/command/{fleet.hostile_commands['DeviceInformation']}", "command"),
        ("/pushcerts", "pushcerts"),
        ("/profile", "profile"),
    ]
    for route, page in pages:
        console.visit(route, page)
        assert console.screenshot(page).stat().st_size > 0
    console.driver.execute_script("sessionStorage.clear()")
    console.visit("/key", "key")
    assert console.screenshot("key").stat().st_size > 0

    console.start(API_KEY)
    console.driver.set_window_size(*NARROW)
    for route, page in pages:
        console.visit(route, page)
        overflow = console.driver.execute_script(
            "const page = document.documentElement; return page.scrollWidth - page.clientWidth"
        )
        assert overflow <= 0, f"{page} scrolls sideways at {NARROW[0]} px"
    console.visit(enrollment_route(fleet.hostile.id), "enrollment")
    console.screenshot("enrollment")
    messages = console.browser_log()
    assert not [m for m in messages if "Content Security Policy" in m or "Uncaught" in m]


def test_overview_shows_server_and_push_cert_expiry(console, server):
    server.upload_push_cert(NEAR_TOPIC, days=10)
    console.visit("/overview", "overview")
    version = http("GET", server.url + "/version").json()["version"]
    assert version in console.text("#version")
    assert "sqlite" in console.text("#storage")
    assert console.find_all("table#enrollment-counts")
    dev = console.find(f'table#pushcert-expiry tr[data-topic="{DEFAULT_TOPIC}"]')
    assert "warning" not in dev.get_attribute("class").split()
    near = console.find(f'table#pushcert-expiry tr[data-topic="{NEAR_TOPIC}"]')
    assert "warning" in near.get_attribute("class").split()
    assert "expires in 10 days" in near.text


def test_device_search_and_type_filter(console, fleet):
    console.visit("/devices", "devices")
    console.find("input#device-search").send_keys(fleet.plain.serial_number, Keys.ENTER)
    wait_listed(console, [fleet.plain.id])

    console.find("input#device-search").clear()
    Select(console.find("select#filter-type")).select_by_value("User")
    console.find("form#device-filters [type=submit]").click()
    wait_listed(console, [fleet.hostile_user.id])


def test_devices_page_by_page(own_server, ca):
    live, console = own_server()
    ids = sorted(Phone.create(live.url, ca).enroll().id for _ in range(51))
    console.visit("/devices", "devices")
    wait_listed(console, ids[:50])
    assert "50" in console.text("#device-count")
    console.find("button#next-page").click()
    wait_listed(console, ids[50:])


def wait_listed(console: Console, ids: list[str]) -> None:
    """Wait until the devices table, ready, lists exactly ``ids``."""

    def listed(driver) -> list[str]:
        if not driver.find_elements(By.CSS_SELECTOR, 'main#page[data-state="ready"]'):
            return []
        rows = driver.find_elements(By.CSS_SELECTOR, "table#devices tr[data-enrollment-id]")
        return [r.get_attribute("data-enrollment-id") for r in rows]

    console.until(lambda driver: listed(driver) == ids, f"the list never became {ids}")


def test_erase_device_needs_the_typed_enrollment_id(console, server, ca):
    phone = Phone.create(server.url, ca).enroll()
    console.visit(enrollment_route(phone.id), "enrollment")
    Select(console.find("select#command-type")).select_by_value("EraseDevice")
    confirm = console.wait_for("input#confirm-destructive")
    confirm.send_keys(phone.id[:-1])
    enqueue = console.find("button#enqueue")
    if enqueue.is_enabled():  # then a click must be refused with a message, not sent
        enqueue.click()
        console.until(
            lambda _: console.text("#message").strip(), "the click was neither refused nor sent"
        )
    assert "Queued EraseDevice" not in console.text("#notice")
    assert server.queue(phone.id) == []

    confirm.send_keys(phone.id[-1])
    console.until(lambda _: enqueue.is_enabled(), "typing the ID did not enable Enqueue")
    command_uuid = enqueue_from_form(console, "EraseDevice")
    assert [c["command_uuid"] for c in server.queue(phone.id)] == [command_uuid]


def test_queue_delete_one_then_clear_with_in_page_confirmation(console, server, ca):
    phone = Phone.create(server.url, ca).enroll()
    uuids = [
        server.enqueue(phone.id, make_command(kind)).json()["command_uuid"]
        for kind in ("ProfileList", "SecurityInfo", "CertificateList")
    ]
    console.visit(enrollment_route(phone.id), "enrollment")
    for command_uuid in uuids:
        assert console.text(f'table#queue tr[data-command-uuid="{command_uuid}"] td.state')
    console.find(f'table#queue tr[data-command-uuid="{uuids[0]}"] button.delete-command').click()
    console.wait_gone(f'table#queue tr[data-command-uuid="{uuids[0]}"]')
    assert [c["command_uuid"] for c in server.queue(phone.id)] == uuids[1:]

    console.find("button#clear-queue").click()
    console.wait_for("button#clear-queue-confirm").click()
    console.wait_gone("table#queue tr[data-command-uuid]")
    assert server.queue(phone.id) == []


def test_push_certificates_listed_and_uploaded(console, server, ca, tmp_path):
    console.visit("/pushcerts", "pushcerts")
    assert console.find_all(f'table#pushcerts tr[data-topic="{DEFAULT_TOPIC}"]')
    topic = "com.apple.mgmt.External.99999999-0000-0000-0000-000000000020"
    pem = push_cert_pem(ca, topic, days=20)
    split = pem.index(b"-----BEGIN", 1)
    (tmp_path / "push.pem").write_bytes(pem[:split])
    (tmp_path / "push.key").write_bytes(pem[split:])
    console.find("input#pushcert-cert").send_keys(str(tmp_path / "push.pem"))
    console.find("input#pushcert-key").send_keys(str(tmp_path / "push.key"))
    console.find("form#pushcert-form [type=submit]").click()
    uploaded = console.wait_for(f'table#pushcerts tr[data-topic="{topic}"]')
    assert "warning" in uploaded.get_attribute("class").split()
    topics = [c["topic"] for c in server.api("GET", "/v1/pushcerts").json()["push_certs"]]
    assert topic in topics


def test_enrollment_profile_preview_and_download(console, server, downloads):
    console.visit("/profile", "profile")
    Select(console.find("select#profile-topic")).select_by_value(DEFAULT_TOPIC)
    preview = console.wait_for_text("pre#profile-preview", DEFAULT_TOPIC)
    assert f"{server.url}/mdm" in preview.text
    assert "SCEP-CHALLENGE-HERE" in preview.text
    console.find("button#profile-download").click()
    saved = downloads / "enroll.mobileconfig"
    console.until(lambda _: saved.exists(), "nothing was downloaded")
    assert DEFAULT_TOPIC.encode() in saved.read_bytes()


# The headers, over plain HTTP as well as in the browser.


@pytest.mark.parametrize(
    "path, status",
    [("/admin/", 200), ("/admin", 301), ("/admin/js/main.js", 200), ("/admin/no-such-file.js", 404),
     ("/admin/js/", 404), ("/admin/%2e%2e/setup.cfg", 404)],
)  # fmt: skip
def test_admin_answers_carry_the_security_headers(server, path, status):
    answer = http("GET", server.url + path)
    assert answer.status == status
    assert answer.headers["content-security-policy"] == CSP
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["referrer-policy"] == "no-referrer"
    assert answer.headers["x-content-type-options"] == "nosniff"


def test_admin_index_is_html_and_redirected_to(server):
    answer = http("GET", server.url + "/admin/")
    assert answer.status == 200
    assert answer.headers["content-type"] == "text/html; charset=utf-8"
    assert b'id="page"' in answer.body
    redirect = http("GET", server.url + "/admin")
    assert (redirect.status, redirect.headers["location"].endswith("/admin/")) == (301, True)


def test_the_browser_enforces_the_policy(anonymous_console):
    """An inline script put into the page does not run: CSP, not just a header."""
    console = anonymous_console
    console.visit("/key", "key")
    ran = console.driver.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        document.addEventListener("securitypolicyviolation", e => done(e.violatedDirective));
        const probe = document.createElement("script");
        probe.textContent = "window.__probe = 1";
        document.body.append(probe);
        setTimeout(() => done(window.__probe === 1 ? "ran" : "no event"), 5000);
        """
    )
    assert ran.startswith("script-src")


@pytest.mark.parametrize(
    "flags", [[], ["-api", API_KEY, "-admin=false"]], ids=["no-api", "admin-false"]
)
def test_console_absent_without_api_or_when_turned_off(tmp_path, ca, flags):
    live = LiveServer(tmp_path, ca, flags, dev=False)  # -dev would make an API key
    live.start()
    try:
        assert http("GET", live.url + "/admin/").status == 404
        assert http("GET", live.url + "/admin/index.html").status == 404
    finally:
        live.stop()
