"""
Push and fan-out figures against the fake APNs over loopback TLS HTTP/2.

    python -m nanomdm_tw.tools.bench_push [--enrollments 10000] [--storage inmem,sqlite]

For each storage backend: enroll N devices on one topic (straight into
storage), then time one push to all of them through the push service
(storage lookup, grouping, the APNs client) and one enqueue of one command
to all of them, with the rows it wrote.  Also the bare APNs client alone.
"""

import argparse
import plistlib
import tempfile
import time
import uuid

from twisted.internet.task import react

from ..crypto.devca import DevelopmentCA, cert_pem, key_pem
from ..mdm.messages import decode_checkin, decode_command
from ..mdm.request import MDMRequest
from ..push.apns import APNsClient
from ..push.service import PushService
from ..storage import make_storage
from .fake_apns import FakeAPNs

TOPIC = "com.apple.mgmt.External.00000000-0000-0000-0000-000000000000"


def _checkins(udid: str, n: int) -> tuple[bytes, bytes]:
    authenticate = {"MessageType": "Authenticate", "UDID": udid, "Topic": TOPIC}
    token_update = dict(
        authenticate,
        MessageType="TokenUpdate",
        Token=n.to_bytes(32, "big"),
        PushMagic=f"magic-{n}",
    )
    return plistlib.dumps(authenticate), plistlib.dumps(token_update)


async def _enroll(storage, count: int) -> list[str]:
    ids = []
    for n in range(count):
        udid = str(uuid.UUID(int=n)).upper()
        for raw in _checkins(udid, n):
            message = decode_checkin(raw)
            request = MDMRequest(enroll_id=message.enroll_id)
            if message.message_type == "Authenticate":
                await storage.store_authenticate(request, message)
            else:
                await storage.store_token_update(request, message)
        ids.append(udid)
    return ids


async def _bare_client(reactor, fake, ca, cert, key, count: int) -> None:
    client = APNsClient(reactor, cert, key, fake.base_url, ca.cert_pem)
    batch = [(n.to_bytes(32, "big"), f"magic-{n}") for n in range(count)]
    started = time.perf_counter()
    results = await client.push_many(batch, TOPIC)
    wall = time.perf_counter() - started
    await client.close()
    ok = sum(1 for r in results if r.status == 200)
    print(f"{'apns client':<12} {'push':<8} {count:>7} {wall:>8.2f} {count / wall:>10,.0f}"
          f"   {ok} ok, {client.connections_made} connection(s)")  # fmt: skip


async def _storage_run(reactor, fake, ca, cert, key, name: str, count: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        storage = make_storage(name, folder if name == "sqlite" else "", "")
        await storage.open()
        ids = await _enroll(storage, count)
        await storage.store_push_cert(TOPIC, cert, key)
        pusher = PushService(storage, reactor, base_url=fake.base_url, extra_ca_pem=ca.cert_pem)
        before = fake.connections_accepted
        started = time.perf_counter()
        results = await pusher.push(ids)
        wall = time.perf_counter() - started
        ok = sum(1 for r in results.values() if r.status == 200)
        connections = fake.connections_accepted - before
        print(f"{name:<12} {'push':<8} {count:>7} {wall:>8.2f} {count / wall:>10,.0f}"
              f"   {ok} ok, {connections} connection(s)")  # fmt: skip
        command = decode_command(
            plistlib.dumps({"CommandUUID": "BENCH", "Command": {"RequestType": "ProfileList"}})
        )
        started = time.perf_counter()
        errors = await storage.enqueue_command(ids, command)
        wall = time.perf_counter() - started
        rows = await storage.row_counts()
        print(f"{name:<12} {'enqueue':<8} {count:>7} {wall:>8.2f} {count / wall:>10,.0f}"
              f"   {len(errors)} errors, rows: {rows['commands']} command,"
              f" {rows['enrollment_queue']} queue")  # fmt: skip
        await pusher.close()
        await storage.close()


async def bench(reactor, enrollments: int, storages: list[str], streams: int) -> None:
    ca = DevelopmentCA.create()
    fake = FakeAPNs(reactor, ca)
    fake.max_concurrent_streams = streams
    await fake.start()
    push_cert, push_key = ca.issue_push_certificate(TOPIC)
    cert, key = cert_pem(push_cert), key_pem(push_key)
    print(f"{'target':<12} {'what':<8} {'IDs':>7} {'wall s':>8} {'per s':>10}")
    await _bare_client(reactor, fake, ca, cert, key, enrollments)
    for name in storages:
        await _storage_run(reactor, fake, ca, cert, key, name, enrollments)
    await fake.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--enrollments", type=int, default=10_000)
    parser.add_argument("--storage", default="inmem,sqlite")
    parser.add_argument("--streams", type=int, default=1000, help="the fake's stream limit")
    args = parser.parse_args()
    react(bench, [args.enrollments, args.storage.split(","), args.streams])


if __name__ == "__main__":
    main()
