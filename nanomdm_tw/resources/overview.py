"""
``GET /v1/overview``: the state of the server on one page of the console.

Version and storage, readiness as ``/readyz`` judges it, enrollment counts,
push and webhook counters as ``/metrics`` reports them (summed over the
``--workers`` processes), and push certificate expiry.  While storage does
not answer there is nothing to count: 503 with the reason, as any API call
to a busy database gets.
"""

from twisted.internet.threads import deferToThread
from twisted.web.resource import Resource
from twisted.web.server import Request

from .. import __version__
from ..errors import StorageBusy
from ..metrics.processes import counter_samples, multiprocess_folder
from .health import Readiness
from .jsonio import json_body
from .pushcerts import Clock, push_cert_entries, utc_now
from .render import async_render

# Seconds a client waits before asking again when storage is not ready.
NOT_READY_RETRY_AFTER = 10


def enrollment_summary(counts: dict[tuple[str, bool], int]) -> dict:
    """``enrollment_counts()`` as totals, enabled and disabled, and per type."""
    by_type: dict[str, int] = {}
    for (kind, _), count in sorted(counts.items()):
        by_type[kind] = by_type.get(kind, 0) + count
    enabled = sum(count for (_, on), count in counts.items() if on)
    total = sum(counts.values())
    return {"total": total, "enabled": enabled, "disabled": total - enabled, "by_type": by_type}


def by_label(samples: list[tuple[dict[str, str], float]], label: str) -> dict[str, int]:
    totals: dict[str, int] = {}
    for labels, value in samples:
        totals[labels[label]] = totals.get(labels[label], 0) + int(value)
    return dict(sorted(totals.items()))


def total(samples: list[tuple[dict[str, str], float]]) -> int:
    return int(sum(value for _, value in samples))


async def read_counters() -> dict[str, list]:
    """The counters; with ``--workers`` every process's files are read, off the reactor."""
    if multiprocess_folder() is None:
        return counter_samples()
    return await deferToThread(counter_samples)


class OverviewResource(Resource):
    isLeaf = True

    def __init__(
        self,
        storage,
        readiness: Readiness,
        storage_name: str,
        webhook_configured: bool,
        clock: Clock = utc_now,
    ):
        """``storage``: provides enrollment_counts() and retrieve_push_certs()."""
        super().__init__()
        self._storage = storage
        self._readiness = readiness
        self._storage_name = storage_name
        self._webhook_configured = webhook_configured
        self._clock = clock

    @async_render
    async def render_GET(self, request: Request) -> bytes:
        reason = await self._readiness.not_ready_because()
        if reason is not None:
            raise StorageBusy(f"storage not ready: {reason}", NOT_READY_RETRY_AFTER)
        counts = await self._storage.enrollment_counts()
        push_certs = await push_cert_entries(self._storage, self._clock())
        counters = await read_counters()
        document = {
            "version": __version__,
            "storage": self._storage_name,
            "ready": True,
            "not_ready_reason": "",
            "enrollments": enrollment_summary(counts),
            "pushes": by_label(counters.get("nanomdm_pushes_total", []), "result"),
            "webhook": {
                "configured": self._webhook_configured,
                "delivered": total(counters.get("nanomdm_webhook_deliveries_total", [])),
                "retries": total(counters.get("nanomdm_webhook_retries_total", [])),
                "dropped": by_label(counters.get("nanomdm_webhook_drops_total", []), "reason"),
            },
            "push_certs": push_certs,
        }
        return json_body(request, document)
