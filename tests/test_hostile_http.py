"""
The live server against hostile clients, property-tested over loopback HTTP.

For every example: no 5xx for the client's mistake, no 401 on a device
path (a device unenrolls on one), nothing stored when refused, and the
server still serves a valid request afterwards.  Hypothesis runs in a
thread and hands each request to the reactor, so the server under test runs
in the test's own reactor as usual.
"""

import base64
import functools
import itertools
import json
import os
import plistlib
import urllib.parse
from pathlib import Path

import pytest
import pytest_twisted
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import reactor, threads
from twisted.internet.defer import Deferred

from nanomdm_tw.crypto.cms import sign_detached
from nanomdm_tw.crypto.devca import DevelopmentCA
from nanomdm_tw.tools.sim import make_identity

from .hostile_inputs import (
    CHECKIN_FIELDS,
    REPORT_FIELDS,
    STORABLE_SOMEWHERE,
    base64_text,
    bounded,
    broken_plist,
    checkin_with_wrong_field,
    header_text,
    mutated,
    named_documents,
    plist_values,
    report_with_wrong_field,
    signature_variants,
)
from .inspection_client import call, device, storage_spec  # noqa: F401 (a fixture)
from .serving import serve
from .test_mdm_http import enqueue_commands, uuid_of

CHECKIN = "application/x-apple-aspen-mdm-checkin"
REPORT = "application/x-apple-aspen-mdm"
_serial = itertools.count()


def on_reactor(async_fn, *args):
    """Run ``async_fn(*args)`` on the reactor from hypothesis's thread; its result."""
    return threads.blockingCallFromThread(
        reactor, lambda: Deferred.fromCoroutine(async_fn(*args))
    )


async def put(server, path: str, body: bytes, headers: dict) -> tuple[int, bytes]:
    answer = await server.http.put(server.url + path, data=body, headers=headers)
    return answer.code, await answer.content()


def signed(identity, body: bytes, content_type: str) -> dict:
    signature = sign_detached(body, identity.cert, identity.key)
    return {"Content-Type": [content_type], "Mdm-Signature": [base64.b64encode(signature)]}


async def stored_anything_of(server, udid: str) -> bool:
    checkins = await server.storage.retrieve_migration_checkins()
    return any(udid.encode() in checkin for checkin in checkins)


async def snapshot(server, enrollment_id: str) -> tuple:
    """What the API could change: stored check-ins, one enrollment's queue, all pending commands."""
    queue = await server.storage.queued_commands(enrollment_id, 1000, include_answered=True)
    return (
        await server.storage.retrieve_migration_checkins(),
        [(entry.command_uuid, entry.status, entry.active) for entry in queue],
        await server.storage.pending_count(),
    )


def device_answer_ok(code: int, content: bytes, must_refuse: bool) -> None:
    assert code < 500, content
    assert code != 401, "a device unenrolls on a 401"
    if must_refuse:
        assert 400 <= code < 500, content


class Runs:
    """Counts a property's examples (a decorator under ``@given``): one that ran none proves nothing."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, prop):
        @functools.wraps(prop)
        def counted(*args, **kwargs):
            self.count += 1
            return prop(*args, **kwargs)

        return counted

    async def run(self, prop, at_least: int = 20) -> None:
        await threads.deferToThread(prop)
        if os.environ.get("HOSTILE_COUNTS"):
            print(f"{prop.__name__}: {self.count} examples")
        assert self.count >= at_least


def fresh_ids() -> dict[str, str]:
    return {"UDID": f"HOSTILE-{next(_serial):06d}"}


@pytest_twisted.async_yield_fixture
async def webhook():
    """A webhook receiver: what the server accepts it also encodes as an event."""
    from .receivers import Receiver

    receiver = await Receiver().start()
    yield receiver
    await receiver.stop()


QUERIES = ["", "?a=%ff%fe", "?a=%00", "?" + "a=b&" * 2000, "?%zz=%", "?a=\u00e9&a=2"]


@pytest_twisted.ensureDeferred
async def test_hostile_checkins(tmp_path: Path, storage_spec, webhook) -> None:  # noqa: F811
    async with serve(tmp_path, storage=storage_spec, webhook_url=webhook.url) as server:
        sentinel = device(server)
        await sentinel.enroll()

        runs = Runs()

        @bounded(50 if storage_spec.name in ("mysql", "pgsql") else 120)
        @given(st.data())
        @runs
        def hostile_checkin(data) -> None:
            ids = fresh_ids()
            kind = data.draw(st.sampled_from(["broken", "wrong type", "named"]))
            if kind == "broken":
                message_type = data.draw(st.sampled_from(sorted(CHECKIN_FIELDS)))
                message = {"MessageType": message_type, **ids, **CHECKIN_FIELDS[message_type]}
                body = data.draw(broken_plist(message))
            elif kind == "wrong type":
                body = plistlib.dumps(data.draw(checkin_with_wrong_field(ids)))
            else:
                documents = named_documents(ids)
                name = data.draw(st.sampled_from(sorted(documents)))
                body = documents[name]
                if name in STORABLE_SOMEWHERE:
                    kind = "storable"
            identity = make_identity(server.ca)
            path = "/mdm" + data.draw(st.sampled_from(QUERIES))
            code, content = on_reactor(put, server, path, body, signed(identity, body, CHECKIN))
            device_answer_ok(code, content, must_refuse=kind in ("wrong type", "named"))
            if code >= 400:
                assert not on_reactor(stored_anything_of, server, ids["UDID"])
            assert on_reactor(sentinel.idle).code == 200

        await runs.run(hostile_checkin)


@pytest_twisted.ensureDeferred
async def test_hostile_reports(tmp_path: Path, storage_spec) -> None:  # noqa: F811
    async with serve(tmp_path, storage=storage_spec) as server:
        d = device(server)
        await d.enroll()
        (queued,) = await enqueue_commands(server, [d.id], "ProfileList")
        ids = {"UDID": d.enrollment.udid}

        runs = Runs()

        @bounded(50 if storage_spec.name in ("mysql", "pgsql") else 100)
        @given(
            broken_plist({**ids, **REPORT_FIELDS})
            | st.builds(plistlib.dumps, report_with_wrong_field(ids))
            | st.builds(lambda v: plistlib.dumps({**ids, **REPORT_FIELDS, "Result": v}, fmt=plistlib.FMT_BINARY), plist_values)
            | st.sampled_from(sorted(named_documents(ids).values()))
            | st.just(plistlib.dumps({**ids, **REPORT_FIELDS, "CommandUUID": "c" * 300}))
        )
        @runs
        def hostile_report(body: bytes) -> None:
            code, content = on_reactor(put, server, "/mdm", body, signed(d.identity, body, REPORT))
            device_answer_ok(code, content, must_refuse=False)
            # The queued command is neither answered nor lost (a valid report names another).
            assert uuid_of(on_reactor(d.idle)) == queued

        await runs.run(hostile_report)


@pytest_twisted.ensureDeferred
async def test_hostile_signatures(tmp_path: Path) -> None:
    async with serve(tmp_path) as server:
        identity = make_identity(server.ca)
        body = plistlib.dumps({"MessageType": "Authenticate", "UDID": "HOSTILE-SIGNATURE", "Topic": "t"})
        good = sign_detached(body, identity.cert, identity.key)
        variants = signature_variants(body, identity)
        sentinel = device(server)
        await sentinel.enroll()

        runs = Runs()

        @bounded(200)
        @given(
            # A change to what the signature does not cover (an unused algorithm
            # in the outer SET, say) leaves it valid: the mutants may pass.
            st.tuples(st.just(False), mutated(good).map(base64.b64encode))
            | st.tuples(st.just(True), st.sampled_from(sorted(variants.values())).map(base64.b64encode)
                        | base64_text.map(str.encode)
                        | header_text.map(lambda t: t.encode("latin-1"))
                        | st.sampled_from([b"A" * 60_000, base64.b64encode(good) * 20, b"=" * 100]))
        )
        @runs
        def hostile_signature(case: tuple[bool, bytes]) -> None:
            must_refuse, header = case
            before = on_reactor(server.storage.retrieve_migration_checkins)
            headers = {"Content-Type": [CHECKIN], "Mdm-Signature": [header]}
            code, content = on_reactor(put, server, "/mdm", body, headers)
            device_answer_ok(code, content, must_refuse=must_refuse)
            if code >= 400:
                assert on_reactor(server.storage.retrieve_migration_checkins) == before
            assert on_reactor(sentinel.idle).code == 200

        await runs.run(hostile_signature)


@pytest_twisted.ensureDeferred
async def test_hostile_cert_headers(tmp_path: Path) -> None:
    async with serve(tmp_path, cert_header="X-Client-Cert") as server:
        identity = make_identity(server.ca)
        stranger = make_identity(DevelopmentCA.create("another CA"))
        pem = identity.cert_pem.decode()
        sentinel = device(server, auth="header:X-Client-Cert")
        await sentinel.enroll()

        runs = Runs()

        @bounded(200)
        @given(
            header_text
            | mutated(urllib.parse.quote(pem).encode()).map(lambda b: b.decode("latin-1"))
            | st.builds(lambda b: ":" + base64.b64encode(b).decode() + ":", st.binary(max_size=300))
            | st.sampled_from([
                urllib.parse.quote(stranger.cert_pem.decode() + pem),  # a chain, foreign first
                urllib.parse.quote(pem.replace("CERTIFICATE", "X509 CRL")),
                "%" * 60_000,
                ":" + "A" * 70_000 + ":",
                urllib.parse.quote(server.ca.cert_pem.decode()),  # the CA itself
            ])
        )
        @runs
        def hostile_cert_header(header: str) -> None:
            ids = fresh_ids()
            body = plistlib.dumps({"MessageType": "Authenticate", **ids, "Topic": "t"})
            headers = {"Content-Type": [CHECKIN], "X-Client-Cert": [header.encode("latin-1")]}
            code, content = on_reactor(put, server, "/mdm", body, headers)
            device_answer_ok(code, content, must_refuse=False)
            if code >= 400:
                assert not on_reactor(stored_anything_of, server, ids["UDID"])
            assert on_reactor(sentinel.idle).code == 200

        await runs.run(hostile_cert_header)


# Commands whose fields are too long for NanoMDM's MySQL/PostgreSQL columns.
LONG_COMMANDS = [
    plistlib.dumps({"CommandUUID": "u" * 300, "Command": {"RequestType": "ProfileList"}}),
    plistlib.dumps({"CommandUUID": "u", "Command": {"RequestType": "R" * 300}}),
]

API_PATHS = [
    "/v1/enqueue/{id}", "/v1/push/{id}", "/v1/enrollments", "/v1/enrollments/{id}",
    "/v1/queue/{id}", "/v1/commands/{id}", "/v1/pushcert", "/v1/escrowkeyunlock", "/migration",
]


@pytest_twisted.ensureDeferred
async def test_hostile_api_requests(tmp_path: Path, storage_spec) -> None:  # noqa: F811
    async with serve(tmp_path, storage=storage_spec, migration=True) as server:
        sentinel = device(server)
        await sentinel.enroll()

        runs = Runs()

        @bounded(50 if storage_spec.name in ("mysql", "pgsql") else 150)
        @given(
            st.sampled_from(["GET", "PUT", "POST", "DELETE"]),
            st.sampled_from(API_PATHS),
            st.sampled_from([sentinel.id, "", ",,,", "x" * 5000, "%00", "%ff%fe", "a%2Fb", "\u00e9"])
            | st.text(max_size=20).map(urllib.parse.quote),
            st.sampled_from(sorted(named_documents({"UDID": "HOSTILE-API"}).values()))
            | broken_plist({"CommandUUID": "u", "Command": {"RequestType": "ProfileList"}})
            | st.binary(max_size=200)
            | st.sampled_from([b"", b"{}", b"[]", b'{"a": 1e999999}', b'"\\ud800"', b"{" * 5000])
            | st.sampled_from(LONG_COMMANDS),
            st.sampled_from(["", "?limit=-1", "?limit=99999999999999999999", "?cursor=%ff",
                             "?offset=x&limit=1", "?ids=" + "a," * 20_000]),
        )
        @runs
        def hostile_api_request(method, path, enrollment_id, body, query) -> None:
            url = server.url + path.format(id=enrollment_id) + query

            async def send():
                answer = await server.http.request(method, url, data=body, auth=server.api_auth())
                return answer.code, await answer.content()

            before = on_reactor(snapshot, server, sentinel.id)
            code, content = on_reactor(send)
            if 400 <= code < 500:
                assert on_reactor(snapshot, server, sentinel.id) == before, (method, url)
            if path in ("/v1/push/{id}", "/v1/enqueue/{id}") and code == 500:
                # NanoMDM's rule, kept for its clients: 500 when every ID failed, each
                # failure named (no push certificate here, a command UUID already queued).
                status = json.loads(content)["status"]
                assert all({"push_error", "command_error"} & set(result)
                           for result in status.values()), content
            else:
                assert code < 500, (method, url, content)
            assert on_reactor(sentinel.idle).code == 200

        await runs.run(hostile_api_request)


# Regressions: examples the properties found, kept as plain tests.


@pytest.mark.parametrize("name", ["binary", "binary with NUL", "UTF-16", "invalid UTF-8"])
@pytest_twisted.ensureDeferred
async def test_checkins_not_utf8_text_refused(tmp_path: Path, storage_spec, name) -> None:  # noqa: F811
    """Was a 500 on PostgreSQL (NUL) and MySQL/PostgreSQL (not UTF-8), stored elsewhere."""
    async with serve(tmp_path, storage=storage_spec) as server:
        ids = fresh_ids()
        body = named_documents(ids)[name]
        code, content = await put(server, "/mdm", body, signed(make_identity(server.ca), body, CHECKIN))
        assert code == 400, content
        assert not await stored_anything_of(server, ids["UDID"])
        await device(server).enroll()


@pytest_twisted.ensureDeferred
async def test_binary_result_refused(tmp_path: Path, storage_spec) -> None:  # noqa: F811
    """A binary result was a 500 on MySQL and PostgreSQL: refused everywhere, the command kept."""
    async with serve(tmp_path, storage=storage_spec) as server:
        d = device(server)
        await d.enroll()
        (queued,) = await enqueue_commands(server, [d.id], "ProfileList")
        assert uuid_of(await d.idle()) == queued
        body = plistlib.dumps({"UDID": d.enrollment.udid, "Status": "Acknowledged",
                               "CommandUUID": queued, "Blob": "\x00\udcff".encode("utf-8", "surrogatepass").decode("latin-1")},
                              fmt=plistlib.FMT_BINARY)
        code, content = await put(server, "/mdm", body, signed(d.identity, body, REPORT))
        assert code == 400, content
        assert uuid_of(await d.idle()) == queued


@pytest_twisted.ensureDeferred
async def test_cert_header_with_unreadable_name_refused(tmp_path: Path) -> None:
    """cryptography parses a certificate lazily, OpenSSL refused its name: was a 500."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    async with serve(tmp_path, cert_header="X-Client-Cert") as server:
        der = make_identity(server.ca).cert.public_bytes(Encoding.DER)
        broken = der.replace(b"nanomdm-sim", b"\xffanomdm-sim")  # UTF8String, not UTF-8
        pem = x509.load_der_x509_certificate(broken).public_bytes(Encoding.PEM)
        ids = fresh_ids()
        body = plistlib.dumps({"MessageType": "Authenticate", **ids, "Topic": "t"})
        headers = {"Content-Type": [CHECKIN], "X-Client-Cert": [urllib.parse.quote(pem.decode())]}
        code, content = await put(server, "/mdm", body, headers)
        assert code == 400, content
        assert not await stored_anything_of(server, ids["UDID"])
        await device(server, auth="header:X-Client-Cert").enroll()


@pytest.mark.parametrize("name", ["huge string", "long identifier", "long push magic"])
@pytest_twisted.ensureDeferred
async def test_values_too_long_for_a_column(tmp_path: Path, storage_spec, name) -> None:  # noqa: F811
    """Was a 500 on MySQL (data too long) and PostgreSQL (VARCHAR): a 400 there, stored elsewhere."""
    async with serve(tmp_path, storage=storage_spec) as server:
        ids = fresh_ids()
        d = device(server, udid=ids["UDID"])
        if name == "long push magic":
            await d.authenticate()
        body = named_documents(ids)[name]
        code, content = await put(server, "/mdm", body, signed(d.identity, body, CHECKIN))
        # MySQL keeps the Authenticate in a TEXT (64 KiB), PostgreSQL in an unbounded TEXT.
        if storage_spec.name == "mysql" or (storage_spec.name == "pgsql" and name != "huge string"):
            assert code == 400, content
            if name != "long push magic":
                assert not await stored_anything_of(server, ids["UDID"])
        else:
            assert code == 200, content
        await device(server).enroll()


@pytest_twisted.ensureDeferred
async def test_hostile_authproxy_requests(tmp_path: Path) -> None:
    from .receivers import Answer, Receiver

    target = await Receiver().start()
    target.answer = Answer(body=b"asset")
    try:
        async with serve(tmp_path, auth_proxy_url=target.url + "/base/") as server:
            d = device(server)
            await d.enroll()
            stranger = make_identity(server.ca)  # trusted, never enrolled
            empty_signed = sign_detached(b"", d.identity.cert, d.identity.key)  # mutated below

            runs = Runs()

            @bounded(150)
            @given(
                st.sampled_from(["GET", "PUT", "POST", "DELETE"]),
                st.text(max_size=30).map(urllib.parse.quote)
                | st.sampled_from(["", "%00", "%ff", "../../etc/passwd", "a" * 10_000, "?x=%zz"]),
                st.binary(max_size=100),
                st.sampled_from(["good", "stranger", "mutated", "garbage", "none"]),
                st.data(),
            )
            @runs
            def hostile_proxy_request(method, path, body, who, data) -> None:
                header = None
                if who in ("good", "stranger"):
                    identity = d.identity if who == "good" else stranger
                    header = base64.b64encode(sign_detached(body, identity.cert, identity.key))
                elif who == "mutated":
                    body = b""
                    header = base64.b64encode(data.draw(mutated(empty_signed)))
                elif who == "garbage":
                    header = data.draw(base64_text).encode()
                headers = {"Mdm-Signature": [header]} if header is not None else {}
                seen = len(target.requests)

                async def send():
                    answer = await server.http.request(
                        method, server.url + "/authproxy/" + path, data=body or None, headers=headers
                    )
                    return answer.code, await answer.content()

                code, content = on_reactor(send)
                device_answer_ok(code, content, must_refuse=who in ("stranger", "garbage", "none"))
                if code >= 400:
                    assert len(target.requests) == seen, "a refused request reached the target"

            await runs.run(hostile_proxy_request)
    finally:
        await target.stop()


@pytest_twisted.ensureDeferred
async def test_hostile_split_endpoints(tmp_path: Path) -> None:
    """--checkin: check-ins on /checkin, reports on /mdm, each refusing the other's hostile forms."""
    async with serve(tmp_path, checkin=True) as server:
        sentinel = device(server, checkin_path="/checkin")
        await sentinel.enroll()
        runs = Runs()

        @bounded(100)
        @given(st.sampled_from(["/checkin", "/mdm"]), st.data())
        @runs
        def hostile_split(path, data) -> None:
            ids = fresh_ids()
            message_type = data.draw(st.sampled_from(sorted(CHECKIN_FIELDS)))
            message = {"MessageType": message_type, **ids, **CHECKIN_FIELDS[message_type]}
            body = data.draw(broken_plist(message) | st.just(plistlib.dumps(message)))
            identity = make_identity(server.ca)
            code, content = on_reactor(put, server, path, body, signed(identity, body, CHECKIN))
            # A check-in is never a command report, whatever its Content-Type says.
            device_answer_ok(code, content, must_refuse=path == "/mdm")
            if code >= 400:
                assert not on_reactor(stored_anything_of, server, ids["UDID"])
            assert on_reactor(sentinel.idle).code == 200

        await runs.run(hostile_split)


@pytest.mark.parametrize("command", LONG_COMMANDS, ids=["CommandUUID", "RequestType"])
@pytest_twisted.ensureDeferred
async def test_command_fields_too_long_for_a_column(tmp_path: Path, storage_spec, command) -> None:  # noqa: F811
    """Was a 500 on MySQL and PostgreSQL: a JSON 400 there, nothing queued; stored elsewhere."""
    async with serve(tmp_path, storage=storage_spec) as server:
        d = device(server)
        await d.enroll()
        code, document = await call(server, "PUT", f"/v1/enqueue/{d.id}?nopush=1", command)
        if storage_spec.name in ("mysql", "pgsql"):
            assert code == 400 and "command_error" in document, document
            assert (await d.idle()).plist is None
        else:
            assert code == 200, document


@pytest_twisted.ensureDeferred
async def test_report_command_uuid_too_long_for_a_column(tmp_path: Path, storage_spec) -> None:  # noqa: F811
    """Was a 500 on PostgreSQL (command_results.command_uuid is a VARCHAR(127)): a 400, the queue kept."""
    async with serve(tmp_path, storage=storage_spec) as server:
        d = device(server)
        await d.enroll()
        (queued,) = await enqueue_commands(server, [d.id], "ProfileList")
        answer = await d.report("Acknowledged", "c" * 300)
        # MySQL keeps results only of commands it knows (none by that UUID): nothing to refuse.
        assert answer.code == (400 if storage_spec.name == "pgsql" else 200), answer.body
        assert uuid_of(await d.idle()) == queued
