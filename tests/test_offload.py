"""
Big bodies off the reactor: a big report is read, verified, decoded and its
webhook event encoded in the Offload pool while small requests are answered;
small bodies stay on the reactor; the pool is bounded and stopped with the server.
"""

import base64
import hashlib
import hmac
import json
import plistlib
import threading
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThreadPool

from nanomdm_tw.crypto.cms import sign_detached
from nanomdm_tw.offload import DEFAULT_THRESHOLD, Offload
from nanomdm_tw.settings import StorageSpec
from nanomdm_tw.tools.bench_big import installed_applications
from nanomdm_tw.tools.sim import SimulatedDevice, enqueue, make_command, make_identity

from .receivers import Answer, Receiver
from .serving import serve


class Watched:
    """
    The server's Offload with every hand-over recorded, and held while ``hold`` is set.

    Records (work name, thread name) in the pool thread that runs it.
    """

    def __init__(self, offload: Offload):
        self.calls: list[tuple[str, str]] = []
        self.entered = threading.Event()
        self.hold = threading.Event()
        self.release = threading.Event()
        run = offload.run

        def watched_run(work, *args):
            def in_thread(*args):
                self.calls.append((work.__name__, threading.current_thread().name))
                self.entered.set()
                if self.hold.is_set():
                    self.release.wait(30)
                return work(*args)

            return run(in_thread, *args)

        offload.run = watched_run  # the instance attribute the endpoint and webhook call

    @property
    def names(self) -> set[str]:
        return {name for name, _ in self.calls}


def hmac_header(key: bytes):
    return lambda body: {
        b"X-Hmac-Signature": base64.b64encode(hmac.new(key, body, hashlib.sha256).digest())
    }


def device(server) -> SimulatedDevice:
    return SimulatedDevice.create(server.url, make_identity(server.ca), http=server.http)


async def until(condition, seconds: float = 30) -> None:
    for _ in range(int(seconds / 0.02)):
        if condition():
            return
        await deferLater(reactor, 0.02)
    raise AssertionError("condition not met in time")


@pytest_twisted.async_yield_fixture
async def receiver():
    receiver = await Receiver().start()
    yield receiver
    await receiver.stop()


@pytest.mark.parametrize("storage", ["inmem", "sqlite"])
@pytest_twisted.ensureDeferred
async def test_idle_is_answered_while_a_big_report_is_decoded_and_it_arrives_whole(
    tmp_path: Path, receiver: Receiver, storage: str
) -> None:
    spec = StorageSpec(storage, str(tmp_path / "db") if storage == "sqlite" else "", "")
    async with serve(tmp_path, storage=spec, webhook_url=receiver.url + "/hook") as server:
        watched = Watched(server.service.offload)
        big, small = device(server), device(server)
        await big.enroll()
        await small.enroll()
        command = make_command("InstalledApplicationList")
        command_uuid = plistlib.loads(command)["CommandUUID"]
        answer = await enqueue(server.http, server.url, server.api_key, [big.id], command)
        assert answer.code == 200
        assert (await big.idle()).plist["CommandUUID"] == command_uuid
        assert watched.calls == []  # nothing small went to the pool

        report = big.prepare_report(
            "Acknowledged",
            command_uuid,
            RequestType="InstalledApplicationList",
            InstalledApplicationList=installed_applications(2 * DEFAULT_THRESHOLD),
        )
        assert len(report.body) > DEFAULT_THRESHOLD
        watched.hold.set()
        sending = Deferred.fromCoroutine(big.send(report))
        try:
            await deferToThreadPool(reactor, reactor.getThreadPool(), watched.entered.wait, 30)
            # The big report is held in a pool thread: a small request is still answered.
            answer = await small.idle()
            assert answer.code == 200 and answer.plist is None
            assert not sending.called
        finally:
            watched.hold.clear()
            watched.release.set()
        answer = await sending
        assert answer.code == 200, answer.body

        deliveries = await server.storage.command_deliveries(command_uuid, 10)
        assert [d.result for d in deliveries] == [report.body]
        hooks = await receiver.wait_for(7)  # 2 x (Authenticate, TokenUpdate), 2 Idle, the report
        events = [json.loads(r.body) for r in hooks]
        acknowledged = [
            e["acknowledge_event"]
            for e in events
            if e.get("acknowledge_event", {}).get("command_uuid") == command_uuid
        ]
        assert len(acknowledged) == 1
        assert base64.b64decode(acknowledged[0]["raw_payload"]) == report.body
        assert acknowledged[0]["status"] == "Acknowledged"
        assert watched.names == {"_read_and_digest", "_decode_big", "encoded"}
        assert all(thread.startswith("offload-") for _, thread in watched.calls)


@pytest_twisted.ensureDeferred
async def test_small_messages_stay_on_the_reactor(tmp_path: Path, receiver: Receiver) -> None:
    async with serve(tmp_path, webhook_url=receiver.url + "/hook", dump=True) as server:
        watched = Watched(server.service.offload)
        d = device(server)
        await d.enroll()
        command = make_command("ProfileList")
        await enqueue(server.http, server.url, server.api_key, [d.id], command)
        await d.idle()
        answer = await d.report("Acknowledged", plistlib.loads(command)["CommandUUID"])
        assert answer.code == 200
        await receiver.wait_for(4)
        assert watched.calls == []


@pytest_twisted.ensureDeferred
async def test_big_bodies_are_dumped_and_refused_from_a_thread(
    tmp_path: Path, capsys
) -> None:
    async with serve(tmp_path, dump=True) as server:
        watched = Watched(server.service.offload)
        d = device(server)
        await d.enroll()
        big_text = "x" * (2 * DEFAULT_THRESHOLD)
        report = d.prepare_report("Acknowledged", "no-such-command", Filler=big_text)
        answer = await d.send(report)
        assert answer.code == 200
        assert "_write" in watched.names  # the dump of the big body
        assert big_text in capsys.readouterr().out

        # Signed, not a plist: refused with 400 from the thread that decoded it.
        watched.calls.clear()
        garbage = b"<plist>" + b"<" * (2 * DEFAULT_THRESHOLD)  # text, not XML
        signature = base64.b64encode(sign_detached(garbage, d.identity.cert, d.identity.key))
        answer = await server.http.put(
            server.url + "/mdm", data=garbage, headers={"Mdm-Signature": signature}
        )
        assert answer.code == 400
        assert b"not a valid plist" in await answer.content()
        assert "_decode_big" in watched.names
        # Signed over other bytes: the digest made in the thread does not match.
        answer = await server.http.put(
            server.url + "/mdm", data=garbage[:-1] + b"!", headers={"Mdm-Signature": signature}
        )
        assert answer.code == 400
        assert b"digest does not match" in await answer.content()
        assert (await d.idle()).code == 200  # still serving


@pytest_twisted.ensureDeferred
async def test_a_big_command_is_decoded_in_a_thread_and_delivered_whole(tmp_path: Path) -> None:
    async with serve(tmp_path) as server:
        watched = Watched(server.service.offload)
        d = device(server)
        await d.enroll()
        profile = b"<profile/>" * (DEFAULT_THRESHOLD // 5)
        command = make_command("InstallProfile", Payload=profile)
        answer = await enqueue(server.http, server.url, server.api_key, [d.id], command)
        assert answer.code == 200, answer.body
        assert watched.names == {"_read_command"}
        assert (await d.idle()).body == command

        bad = command.replace(b"<key>Command</key>", b"<key>Commando</key>")
        answer = await enqueue(server.http, server.url, server.api_key, [d.id], bad)
        assert answer.code == 400  # refused from the thread: no Command.RequestType
        assert json.loads(answer.body) == {"command_error": "command: missing RequestType"}


@pytest_twisted.ensureDeferred
async def test_the_pool_is_bounded_and_stopped_with_the_server(tmp_path: Path) -> None:
    offload = Offload(reactor, threads=2)
    offload.start()
    release = threading.Event()
    waiting = [offload.run(release.wait, 30) for _ in range(5)]
    assert len(offload.pool.threads) == 2  # five waiting, never more than two threads
    release.set()
    assert await gatherResults(waiting) == [True] * 5
    offload.stop()
    assert offload.pool.threads == []

    async with serve(tmp_path) as server:
        pool = server.service.offload.pool
        assert pool.started and pool.max == 2
        d = device(server)
        await d.enroll()
        await d.send(d.prepare_report("Idle", Filler="y" * (2 * DEFAULT_THRESHOLD)))
        assert pool.threads  # started when big work came
    assert not pool.started and pool.threads == []
    assert not any(t.name.startswith("offload-") for t in threading.enumerate())


@pytest_twisted.ensureDeferred
async def test_a_big_declarative_management_status_is_signed_and_checked_in_a_thread(
    tmp_path: Path, receiver: Receiver
) -> None:
    send_key, recv_key = b"to-ddm", b"from-ddm"
    big_answer = b'{"Declarations":"' + b"z" * (2 * DEFAULT_THRESHOLD) + b'"}'
    receiver.answer = Answer(body=big_answer, headers_for=hmac_header(recv_key))
    settings = dict(
        dm=receiver.url + "/ddm/",
        dm_send_hmac_key=send_key.decode(),
        dm_recv_hmac_key=recv_key.decode(),
    )
    async with serve(tmp_path, **settings) as server:
        watched = Watched(server.service.offload)
        d = device(server)
        await d.enroll()
        data = b'{"StatusItems":"' + b"s" * (2 * DEFAULT_THRESHOLD) + b'"}'
        answer = await d.checkin("DeclarativeManagement", Endpoint="status", Data=data)
    assert answer.code == 200 and answer.body == big_answer
    (recorded,) = receiver.requests
    assert recorded.body == data
    assert recorded.header("X-Hmac-Signature") == hmac_header(send_key)(data)[
        b"X-Hmac-Signature"
    ].decode()
    assert [name for name, _ in watched.calls].count("hmac_signature") == 2
