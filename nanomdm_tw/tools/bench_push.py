"""
Push throughput against the fake APNs over loopback TLS HTTP/2.

    python -m nanomdm_tw.tools.bench_push [--pushes 10000] [--streams 1000]

Prints pushes/s, wall time and the connections the client opened.
"""

import argparse
import time

from twisted.internet.task import react

from ..crypto.devca import DevelopmentCA, cert_pem, key_pem
from ..push.apns import APNsClient
from .fake_apns import FakeAPNs

TOPIC = "com.apple.mgmt.External.00000000-0000-0000-0000-000000000000"


async def bench(reactor, pushes: int, streams: int) -> None:
    ca = DevelopmentCA.create()
    fake = FakeAPNs(reactor, ca)
    fake.max_concurrent_streams = streams
    await fake.start()
    cert, key = ca.issue_push_certificate(TOPIC)
    client = APNsClient(
        reactor, cert_pem(cert), key_pem(key), fake.base_url, ca.cert_pem
    )
    batch = [(n.to_bytes(32, "big"), f"magic-{n}") for n in range(pushes)]
    started = time.perf_counter()
    results = await client.push_many(batch, TOPIC)
    wall = time.perf_counter() - started
    await client.close()
    await fake.stop()
    delivered = sum(1 for r in results if r.status == 200)
    print(f"pushes:        {pushes} ({delivered} answered 200)")
    print(f"stream limit:  {streams}")
    print(f"wall time:     {wall:.2f} s")
    print(f"pushes/s:      {pushes / wall:,.0f}")
    print(f"connections:   {client.connections_made}")
    print(f"peak streams:  {fake.peak_open_streams}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--pushes", type=int, default=10_000)
    parser.add_argument("--streams", type=int, default=1000)
    args = parser.parse_args()
    react(bench, [args.pushes, args.streams])


if __name__ == "__main__":
    main()
